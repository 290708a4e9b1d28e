// SPDX-License-Identifier: Apache-2.0
import CZlib
import Glibc
import CBDFormat

/// An undo file in the manner of e2undo: before a risky rewrite overwrites a pblk, its old
/// contents are appended to the undo file and synced, so `cbd undo` can put the device back
/// exactly as it was, even after a crash in the middle.
///
/// It also says which device it belongs to, so that it is never applied to another one, nor
/// twice. Format (little endian):
///
/// - head: "CBDUNDO2", u64 original size, u64 pblk size (4096), u64 target size (what the
///   rewrite grows or shrinks the device to), then the device's pblk 0 before the rewrite;
/// - records, in the order saved: u64 pblk, u32 crc32 of the pblk number and data, u32 0, and
///   the pblk's 4096 old bytes (only the first save of a pblk; none past the original size);
/// - when the rewrite completed, a trailer: "CBDUNDOE", u64 records, u64 final size, u32 crc32
///   of the saved pblks as the rewrite left them (those inside the final size, in record
///   order), u32 crc32 of the trailer's first 28 bytes.
///
/// Applying it turns the magic into "CBDUNDOP" first (an undo under way: the same command
/// finishes it), then "CBDUNDOA": applied once.
///
/// Which records count: the recorder syncs a batch of records before it overwrites any of
/// their pblks. In a file without a trailer (the rewrite was interrupted) a record whose
/// checksum fails was therefore never synced, and its pblk never overwritten: it is skipped.
/// In a completed file every record was synced, and a damaged one is refused. A file whose
/// trailer is missing or damaged while the device holds the resize's final, clean header lost
/// its end (the trailer is written right after that header): refused too, before any write.
enum UndoFile {
    static let magic = Array("CBDUNDO2".utf8)
    static let applyingMagic = Array("CBDUNDOP".utf8)
    static let appliedMagic = Array("CBDUNDOA".utf8)
    static let trailerMagic = Array("CBDUNDOE".utf8)
    static let headBytes = 32 + Units.pblkSize
    static let recordBytes = 16 + Units.pblkSize
    static let trailerBytes = 32

    static func crc(_ p: UnsafeRawPointer, _ count: Int, _ seed: UInt32 = 0) -> UInt32 { CRC32.of(p, count, seed) }
    static func crc(_ bytes: [UInt8], _ seed: UInt32 = 0) -> UInt32 { CRC32.of(bytes, seed) }
}

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
            throw errno == EEXIST ? CBDError("\(undoPath): undo file already exists")
                                  : systemError("cannot create undo file", undoPath, errno: errno)
        }
        self.fd = fd
        do {
            var head = UndoFile.magic + [UInt8](repeating: 0, count: 24)
            LE.put(UInt64(originalSize), 8, &head, 8)
            LE.put(UInt64(Units.pblkSize), 8, &head, 16)
            LE.put(UInt64(targetSize), 8, &head, 24)
            head += try inner.readPblks(0)
            try pwriteAll(fd, head, head.count, 0, what: undoPath)
            guard fsync(fd) == 0 else { throw systemError("cannot sync", undoPath, errno: errno) }
            try UndoRecorder.syncDirectory(of: undoPath)
        } catch {
            close(fd)
            unlink(undoPath)   // nothing was changed yet: an empty undo file would only mislead
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
        for p in range.lowerBound / Units.pblkSize ..< (range.upperBound + Units.pblkSize - 1) / Units.pblkSize {
            guard (p + 1) * Units.pblkSize <= originalSize, saved.insert(p).inserted else { continue }
            LE.put(UInt64(p), 8, &record, 0)
            try record.withUnsafeMutableBytes { b in
                try inner.read(into: UnsafeMutableRawBufferPointer(rebasing: b[16...]), at: p * Units.pblkSize)
            }
            let sum = UndoFile.crc(Array(record[16...]), UndoFile.crc(Array(record[0..<8])))
            LE.put(UInt64(sum), 4, &record, 8)
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
        var t = UndoFile.trailerMagic + [UInt8](repeating: 0, count: 24)
        LE.put(UInt64(order.count), 8, &t, 8)
        LE.put(UInt64(inner.size), 8, &t, 16)
        LE.put(UInt64(sum), 4, &t, 24)
        LE.put(UInt64(UndoFile.crc(Array(t[0..<28]))), 4, &t, 28)
        try pwriteAll(fd, t, t.count, end, what: undoPath)
        guard fsync(fd) == 0 else { throw systemError("cannot sync", undoPath, errno: errno) }
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
    /// What an undo did: pblks restored, and records skipped because they were never synced
    /// (their pblks were never overwritten: see `UndoFile`).
    public struct Result: Equatable, Sendable {
        public var restored: Int
        public var skipped: Int
        /// The file was applied before and the device is as it left it: nothing was done (a
        /// second run, after a crash between the last restore and the command's reply).
        public var alreadyApplied = false
    }

    /// Restores every saved pblk and the original size.
    ///
    /// Refused, changing nothing: a file that is not an undo file, is damaged (a completed
    /// file with a record whose checksum fails) or saved nothing; and, unless `force`, a device
    /// that is not the one the file was written for in the state the rewrite left it (size,
    /// checksum of the saved pblks; for an interrupted rewrite, the size and pblk 0), or a file
    /// already applied.
    ///
    /// Crash-safe: the file is marked "under way" first; pblk 0 then holds the resize marker
    /// (so that fsck.cbd sends the user back here), every other pblk is restored and synced,
    /// and only then is the original pblk 0 written. An interrupted undo is finished by the same
    /// call (which, under way, does not ask the device to be as the rewrite left it), and a
    /// finished one run again does nothing and succeeds.
    @discardableResult
    public static func apply(undoPath: String, to device: BlockDevice, force: Bool = false,
                             progress: ProgressHandler? = nil) throws -> Result {
        let fd = open(undoPath, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw systemError("cannot open undo file", undoPath, errno: errno) }
        defer { close(fd) }
        let file = try read(fd, undoPath)
        if file.applied, try holdsRestored(file, fd, undoPath, device) {
            return Result(restored: 0, skipped: 0, alreadyApplied: true)
        }
        if let mismatch = try identityMismatch(file, device), !force {
            throw CBDError("\(undoPath): \(mismatch); nothing restored", hint: .force)
        }
        if !file.underWay {
            try pwriteAll(fd, UndoFile.applyingMagic, 8, 0, what: undoPath)
            guard fsync(fd) == 0 else { throw systemError("cannot sync", undoPath, errno: errno) }
        }
        if file.original > device.size { try device.setSize(file.original) }
        try device.writePblks(ResizeMarker.encode(undoPath: absolutePath(undoPath)), at: 0)
        try device.sync()
        var record = [UInt8](repeating: 0, count: UndoFile.recordBytes)
        for (n, (i, p)) in zip(file.recordIndices, file.pblks).enumerated() where p != 0 {
            try preadAll(fd, &record, record.count, UndoFile.headBytes + i * UndoFile.recordBytes, what: undoPath)
            try record.withUnsafeBytes {
                try device.write(UnsafeRawBufferPointer(rebasing: $0[16...]), at: p * Units.pblkSize)
            }
            progress?(n + 1, file.pblks.count)
        }
        try device.sync()
        // Last, the original pblk 0 (the head keeps it): the device is itself again.
        try device.writePblks(file.header, at: 0)
        try device.sync()
        if file.original < device.size { try device.setSize(file.original) }
        try device.sync()
        try pwriteAll(fd, UndoFile.appliedMagic, 8, 0, what: undoPath)
        guard fsync(fd) == 0 else { throw systemError("cannot sync", undoPath, errno: errno) }
        return Result(restored: file.pblks.count, skipped: file.records - file.pblks.count)
    }

    /// Whether `device` is what applying `file` left: its original size, its original pblk 0
    /// and every saved pblk's old contents ("applied" is written only once all were synced).
    static func holdsRestored(_ file: Parsed, _ fd: Int32, _ undoPath: String, _ device: BlockDevice) throws -> Bool {
        guard device.size == file.original, try device.readPblks(0) == file.header else { return false }
        var record = [UInt8](repeating: 0, count: UndoFile.recordBytes)
        for (i, p) in zip(file.recordIndices, file.pblks) where p != 0 {
            try preadAll(fd, &record, record.count, UndoFile.headBytes + i * UndoFile.recordBytes, what: undoPath)
            guard try device.readPblks(p) == Array(record[16...]) else { return false }
        }
        return true
    }

    /// The undo file's full path, for the marker.
    package static func absolutePath(_ path: String) -> String {
        guard let r = realpath(path, nil) else { return path }
        defer { free(r) }
        return String(cString: r)
    }

    /// What the file says, checked: every record whole and intact.
    struct Parsed {
        var applied: Bool
        /// An undo was started and not finished.
        var underWay: Bool
        var original: Int
        var target: Int
        var header: [UInt8]
        var records: Int
        /// The records that count (index in the file, and its pblk).
        var recordIndices: [Int]
        var pblks: [Int]
        /// (records, final size, checksum) when the rewrite completed.
        var trailer: (records: Int, size: Int, sum: UInt32)?
    }

    static func read(_ fd: Int32, _ path: String) throws -> Parsed {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw systemError("cannot stat", path, errno: errno) }
        let fileSize = Int(st.st_size)
        guard fileSize >= 8 else { throw CBDError("\(path): not a cbd undo file") }
        var head = [UInt8](repeating: 0, count: min(fileSize, UndoFile.headBytes))
        try preadAll(fd, &head, head.count, 0, what: path)
        let magic = Array(head[0..<8])
        guard magic == UndoFile.magic || magic == UndoFile.appliedMagic || magic == UndoFile.applyingMagic else {
            throw CBDError("\(path): not a cbd undo file")
        }
        guard head.count == UndoFile.headBytes, LE.get(head, 16, 8) == UInt64(Units.pblkSize),
              LE.get(head, 8, 8) <= UInt64(Int.max / 2), LE.get(head, 24, 8) <= UInt64(Int.max / 2) else {
            throw CBDError("\(path): incomplete or damaged undo file (its head)")
        }
        var parsed = Parsed(applied: magic == UndoFile.appliedMagic, underWay: magic == UndoFile.applyingMagic,
                            original: Int(LE.get(head, 8, 8)), target: Int(LE.get(head, 24, 8)),
                            header: Array(head[32...]), records: 0, recordIndices: [], pblks: [], trailer: nil)
        var body = fileSize - UndoFile.headBytes
        if body >= UndoFile.trailerBytes && (body - UndoFile.trailerBytes) % UndoFile.recordBytes == 0 {
            var t = [UInt8](repeating: 0, count: UndoFile.trailerBytes)
            try preadAll(fd, &t, t.count, fileSize - t.count, what: path)
            if Array(t[0..<8]) == UndoFile.trailerMagic && LE.get(t, 28, 4) == UInt64(UndoFile.crc(Array(t[0..<28]))) {
                parsed.trailer = (Int(clamping: LE.get(t, 8, 8)), Int(clamping: LE.get(t, 16, 8)), UInt32(LE.get(t,
                    24, 4)))
                body -= UndoFile.trailerBytes
            }
        }
        // Without a trailer the rewrite was interrupted: a torn last record was never used.
        parsed.records = body / UndoFile.recordBytes
        if let t = parsed.trailer, t.records != parsed.records {
            throw CBDError("\(path): incomplete or damaged undo file (\(parsed.records) records, trailer says "
                + "\(t.records))")
        }
        guard parsed.records > 0 else { throw CBDError("\(path): the undo file saved nothing; nothing to undo") }
        var record = [UInt8](repeating: 0, count: UndoFile.recordBytes)
        let limit = parsed.original / Units.pblkSize
        for i in 0..<parsed.records {
            try preadAll(fd, &record, record.count, UndoFile.headBytes + i * UndoFile.recordBytes, what: path)
            let p = LE.get(record, 0, 8)
            let sum = UndoFile.crc(Array(record[16...]), UndoFile.crc(Array(record[0..<8])))
            guard LE.get(record, 8, 4) == UInt64(sum), p < UInt64(limit) else {
                // Interrupted: never synced, so its pblk was never overwritten.
                if parsed.trailer == nil { continue }
                throw CBDError("\(path): damaged undo file (record \(i))")
            }
            parsed.recordIndices.append(i)
            parsed.pblks.append(Int(p))
        }
        return parsed
    }

    /// Why `device` is not the one, in the state, the undo file was written for; nil when it is.
    static func identityMismatch(_ file: Parsed, _ device: BlockDevice) throws -> String? {
        if file.applied { return "already applied" }
        if file.underWay {
            // Checked when it started; the device is half restored now. Its size is one of the
            // three it has had.
            let sizes = [file.original, file.target] + (file.trailer.map { [$0.size] } ?? [])
            return sizes.contains(device.size) ? nil : "written for a device of \(file.original) bytes, this one has "
                + "\(device.size)"
        }
        if let t = file.trailer {
            guard device.size == t.size else {
                return "written for a device of \(t.size) bytes, this one has \(device.size)"
            }
            var sum: UInt32 = 0
            let buffer = ByteBuffer(count: Units.pblkSize)
            for p in file.pblks where (p + 1) * Units.pblkSize <= device.size {
                try device.read(into: buffer.raw, at: p * Units.pblkSize)
                sum = UndoFile.crc(buffer.base, Units.pblkSize, sum)
            }
            return sum == t.sum ? nil : "the device is not as the resize left it (another device, or changed since)"
        }
        // An interrupted rewrite: the device has its old or its new size, and its header is
        // the one it had or the zeros the rewrite put there first.
        guard device.size == file.original || device.size == file.target else {
            return "written for a device of \(file.original) bytes, this one has \(device.size)"
        }
        let head = try device.readPblks(0)
        let decoded = try? Header.decode(head)
        let newHeader = decoded.map { Int($0.nrPhysicalSectors) * Units.sectorSize == file.target }
        let marker = ResizeMarker.undoPath(in: head) != nil
        // A resize writes its final header, clean, only after every other change is synced,
        // and the trailer right after: a device that holds it while the file has no trailer
        // means the file lost its end (cut short, or its trailer damaged), not an interruption.
        if head != file.header, newHeader == true, decoded?.isDirty == false {
            return "the undo file has no valid trailer, but the device holds the finished resize: the file was "
                + "cut short or damaged"
        }
        guard head == file.header || head.allSatisfy({ $0 == 0 }) || marker || newHeader == true else {
            return "the device's header is neither the one saved nor the cleared one of an interrupted resize"
        }
        return nil
    }
}

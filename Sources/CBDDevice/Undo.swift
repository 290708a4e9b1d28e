// SPDX-License-Identifier: Apache-2.0
import Glibc
import CBDFormat

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
    public static func apply(
        undoPath: String, to device: BlockDevice, force: Bool = false,
        progress: ProgressHandler? = nil
    ) throws -> Result {
        let fd = open(undoPath, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw systemError("cannot open undo file", undoPath, errno: errno) }
        defer { close(fd) }
        let file = try UndoFile.parse(fd, undoPath)
        if file.applied, try holdsRestored(file, fd, undoPath, device) {
            return Result(restored: 0, skipped: 0, alreadyApplied: true)
        }
        if let mismatch = try identityMismatch(file, device), !force {
            throw CBDError("\(undoPath): \(mismatch); nothing restored", hint: .force)
        }
        if !file.underWay {
            try UndoFile.mark(fd, UndoFile.applyingMagic, path: undoPath)
        }
        if file.original > device.size { try device.setSize(file.original) }
        try device.writePblks(ResizeMarker.encode(undoPath: absolutePath(undoPath)), at: 0)
        try device.sync()
        var record = [UInt8](repeating: 0, count: UndoFile.recordBytes)
        for (n, (i, p)) in zip(file.recordIndices, file.pblks).enumerated() where p != 0 {
            try preadAll(fd, &record, record.count, UndoFile.recordOffset(i), what: undoPath)
            try record.withUnsafeBytes {
                try device.write(UnsafeRawBufferPointer(rebasing: $0[UndoFile.dataStart...]), at: p * Units.pblkSize)
            }
            progress?(n + 1, file.pblks.count)
        }
        try device.sync()
        // Last, the original pblk 0 (the head keeps it): the device is itself again.
        try device.writePblks(file.header, at: 0)
        try device.sync()
        if file.original < device.size { try device.setSize(file.original) }
        try device.sync()
        try UndoFile.mark(fd, UndoFile.appliedMagic, path: undoPath)
        return Result(restored: file.pblks.count, skipped: file.records - file.pblks.count)
    }

    /// Whether `device` is what applying `file` left: its original size, its original pblk 0
    /// and every saved pblk's old contents ("applied" is written only once all were synced).
    static func holdsRestored(_ file: UndoFile.Parsed, _ fd: Int32, _ undoPath: String, _ device: BlockDevice) throws
        -> Bool
    {
        guard device.size == file.original, try device.readPblks(0) == file.header else { return false }
        var record = [UInt8](repeating: 0, count: UndoFile.recordBytes)
        for (i, p) in zip(file.recordIndices, file.pblks) where p != 0 {
            try preadAll(fd, &record, record.count, UndoFile.recordOffset(i), what: undoPath)
            guard try device.readPblks(p) == Array(record[UndoFile.dataStart...]) else { return false }
        }
        return true
    }

    /// The undo file's full path, for the marker.
    package static func absolutePath(_ path: String) -> String {
        guard let r = realpath(path, nil) else { return path }
        defer { free(r) }
        return String(cString: r)
    }

    /// Why `device` is not the one, in the state, the undo file was written for; nil when it is.
    static func identityMismatch(_ file: UndoFile.Parsed, _ device: BlockDevice) throws -> String? {
        if file.applied { return "already applied" }
        if file.underWay {
            // Checked when it started; the device is half restored now. Its size is one of the
            // three it has had.
            let sizes = [file.original, file.target] + (file.trailer.map { [$0.size] } ?? [])
            return sizes.contains(device.size)
                ? nil
                : "written for a device of \(file.original) bytes, this one has "
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

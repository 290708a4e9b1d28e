// SPDX-License-Identifier: Apache-2.0
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
    /// A record: u64 pblk, u32 crc32, u32 0, then the pblk's old bytes from `dataStart`.
    static let recordBytes = 16 + Units.pblkSize
    static let dataStart = 16
    static let trailerBytes = 32

    static func crc(_ p: UnsafeRawPointer, _ count: Int, _ seed: UInt32 = 0) -> UInt32 { CRC32.of(p, count, seed) }
    static func crc(_ bytes: [UInt8], _ seed: UInt32 = 0) -> UInt32 { CRC32.of(bytes, seed) }

    /// Where record `i` starts in the file.
    static func recordOffset(_ i: Int) -> Int { headBytes + i * recordBytes }

    /// The head: magic, sizes, and the device's pblk 0 before the rewrite.
    static func head(original: Int, target: Int, pblk0: [UInt8]) -> [UInt8] {
        var head = magic + [UInt8](repeating: 0, count: 24)
        LE.put(UInt64(original), 8, &head, 8)
        LE.put(UInt64(Units.pblkSize), 8, &head, 16)
        LE.put(UInt64(target), 8, &head, 24)
        return head + pblk0
    }

    /// Completes `record` (its data already at `dataStart`) for pblk `p`: number and checksum.
    static func seal(_ record: inout [UInt8], pblk p: Int) {
        LE.put(UInt64(p), 8, &record, 0)
        LE.put(UInt64(recordSum(record)), 4, &record, 8)
    }

    /// The checksum of a record: its pblk number, then its data.
    static func recordSum(_ record: [UInt8]) -> UInt32 {
        crc(Array(record[dataStart...]), crc(Array(record[0..<8])))
    }

    /// The trailer of a completed rewrite.
    static func trailer(records: Int, finalSize: Int, sum: UInt32) -> [UInt8] {
        var t = trailerMagic + [UInt8](repeating: 0, count: 24)
        LE.put(UInt64(records), 8, &t, 8)
        LE.put(UInt64(finalSize), 8, &t, 16)
        LE.put(UInt64(sum), 4, &t, 24)
        LE.put(UInt64(crc(Array(t[0..<28]))), 4, &t, 28)
        return t
    }

    /// Marks the file as an undo under way or applied (its first eight bytes), synced.
    static func mark(_ fd: Int32, _ state: [UInt8], path: String) throws {
        try pwriteAll(fd, state, state.count, 0, what: path)
        guard fsync(fd) == 0 else { throw systemError("cannot sync", path, errno: errno) }
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

    static func parse(_ fd: Int32, _ path: String) throws -> Parsed {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw systemError("cannot stat", path, errno: errno) }
        let fileSize = Int(st.st_size)
        guard fileSize >= 8 else { throw CBDError("\(path): not a cbd undo file") }
        var head = [UInt8](repeating: 0, count: min(fileSize, headBytes))
        try preadAll(fd, &head, head.count, 0, what: path)
        let found = Array(head[0..<8])
        guard found == magic || found == appliedMagic || found == applyingMagic else {
            throw CBDError("\(path): not a cbd undo file")
        }
        guard head.count == headBytes, LE.get(head, 16, 8) == UInt64(Units.pblkSize),
            LE.get(head, 8, 8) <= UInt64(Int.max / 2), LE.get(head, 24, 8) <= UInt64(Int.max / 2)
        else {
            throw CBDError("\(path): incomplete or damaged undo file (its head)")
        }
        var parsed = Parsed(
            applied: found == appliedMagic, underWay: found == applyingMagic,
            original: Int(LE.get(head, 8, 8)), target: Int(LE.get(head, 24, 8)),
            header: Array(head[32...]), records: 0, recordIndices: [], pblks: [], trailer: nil)
        var body = fileSize - headBytes
        if body >= trailerBytes && (body - trailerBytes) % recordBytes == 0 {
            var t = [UInt8](repeating: 0, count: trailerBytes)
            try preadAll(fd, &t, t.count, fileSize - t.count, what: path)
            if Array(t[0..<8]) == trailerMagic && LE.get(t, 28, 4) == UInt64(crc(Array(t[0..<28]))) {
                parsed.trailer = (
                    Int(clamping: LE.get(t, 8, 8)), Int(clamping: LE.get(t, 16, 8)),
                    UInt32(
                        LE.get(
                            t,
                            24, 4))
                )
                body -= trailerBytes
            }
        }
        // Without a trailer the rewrite was interrupted: a torn last record was never used.
        parsed.records = body / recordBytes
        if let t = parsed.trailer, t.records != parsed.records {
            throw CBDError(
                "\(path): incomplete or damaged undo file (\(parsed.records) records, trailer says "
                    + "\(t.records))")
        }
        guard parsed.records > 0 else { throw CBDError("\(path): the undo file saved nothing; nothing to undo") }
        var record = [UInt8](repeating: 0, count: recordBytes)
        let limit = parsed.original / Units.pblkSize
        for i in 0..<parsed.records {
            try preadAll(fd, &record, record.count, recordOffset(i), what: path)
            let p = LE.get(record, 0, 8)
            guard LE.get(record, 8, 4) == UInt64(recordSum(record)), p < UInt64(limit) else {
                // Interrupted: never synced, so its pblk was never overwritten.
                if parsed.trailer == nil { continue }
                throw CBDError("\(path): damaged undo file (record \(i))")
            }
            parsed.recordIndices.append(i)
            parsed.pblks.append(Int(p))
        }
        return parsed
    }
}

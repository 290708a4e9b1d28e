// SPDX-License-Identifier: Apache-2.0
/// The intent record of format 1.1: new table entries that straddle two table pblks,
/// saved before they are written, so that a crash between the writes of the two pblks
/// leaves an entry that can be completed (replayed) instead of a torn mix of old and new slots.
///
/// It lives in the header's reserved bytes from offset 64 and exists only while the device
/// is DIRTY, between a writer's "intent synced" and "entries synced" steps; the header then
/// says version 1.1. A clean device never has one and stays version 1.0.
///
/// Layout (little endian) at header offset 64: magic "INTN", u32 records, u32 journal pblk
/// count n, u32 zero, u64 payload bytes, then either
/// - n = 0 (inline): the payload itself, in the header (at most `maxInlineBytes`); it needs no
///   free pblk, so freeing space (a discard, an fsck repair) works on a full device; or
/// - n >= 1: u64[n] journal pblks, whose bytes in order, cut to the length, are the payload
///   (for entries too large to fit the header: blocks of 4 MiB and more).
///
/// The payload is `records` times (u64 lblk, entry_len bytes of the new entry).
public struct Intent: Equatable, Sendable {
    public static let offset = 64
    public static let magic: [UInt8] = Array("INTN".utf8)
    static let listOffset = offset + 24
    /// Journal pblks one intent can name.
    public static let maxJournalPblks = (Units.pblkSize - listOffset) / 8
    /// Payload bytes that fit in the header itself.
    public static let maxInlineBytes = Units.pblkSize - listOffset

    public var records: Int
    public var payloadBytes: Int
    /// Where the payload is: empty when it is inline.
    public var journal: [Pblk]
    /// The payload, when inline (`journal` empty); else empty.
    public var inlinePayload: [UInt8]

    /// An intent whose payload lies in `journal` pblks.
    public init(records: Int, payloadBytes: Int, journal: [Pblk]) {
        self.records = records
        self.payloadBytes = payloadBytes
        self.journal = journal
        self.inlinePayload = []
    }

    /// An intent carrying its payload in the header (at most `maxInlineBytes`).
    public init(records: Int, inline payload: [UInt8]) {
        precondition(payload.count <= Intent.maxInlineBytes)
        self.records = records
        self.payloadBytes = payload.count
        self.journal = []
        self.inlinePayload = payload
    }

    public var isInline: Bool { journal.isEmpty }

    /// Bytes of one record for entries of `entryLen` bytes.
    public static func recordBytes(entryLen: Int) -> Int { 8 + entryLen }

    /// Records of `entryLen`-byte entries that fit inline (0: none, use journal pblks).
    public static func inlineRecords(entryLen: Int) -> Int { maxInlineBytes / recordBytes(entryLen: entryLen) }

    func encode(into b: inout [UInt8]) {
        b.replaceSubrange(Intent.offset..<Intent.offset + 4, with: Intent.magic)
        LE.put(UInt64(records), 4, &b, Intent.offset + 4)
        LE.put(UInt64(journal.count), 4, &b, Intent.offset + 8)
        LE.put(UInt64(payloadBytes), 8, &b, Intent.offset + 16)
        if isInline {
            b.replaceSubrange(Intent.listOffset..<Intent.listOffset + inlinePayload.count, with: inlinePayload)
        }
        for (i, p) in journal.enumerated() { LE.put(p, 8, &b, Intent.listOffset + 8 * i) }
    }

    /// The bytes of the header pblk the intent occupies (the rest must be zero).
    var byteRange: Range<Int> { Intent.offset..<Intent.listOffset + (isInline ? payloadBytes : 8 * journal.count) }

    /// Reads and checks an intent from a header pblk: counts in range, a payload that fits
    /// inline or fills its journal pblks, no pblk 0. What the geometry decides is checked at replay.
    static func decode(_ b: [UInt8]) throws(HeaderError) -> Intent {
        guard b.count >= Units.pblkSize, Array(b[offset..<offset + 4]) == magic else {
            throw .badIntent(
                "no intent "
                    + "magic")
        }
        let records = LE.get(b, offset + 4, 4), n = LE.get(b, offset + 8, 4)
        let zero = LE.get(b, offset + 12, 4), payload = LE.get(b, offset + 16, 8)
        guard zero == 0, records >= 1, n <= UInt64(maxJournalPblks) else {
            throw .badIntent("counts out of range")
        }
        if n == 0 {
            guard payload <= UInt64(maxInlineBytes), payload / records >= 9 else {
                throw .badIntent("inline payload of \(payload) bytes does not fit the header")
            }
            return Intent(records: Int(records), inline: Array(b[listOffset..<listOffset + Int(payload)]))
        }
        guard payload > (n - 1) * UInt64(Units.pblkSize), payload <= n * UInt64(Units.pblkSize),
            payload / records >= 9
        else { throw .badIntent("payload of \(payload) bytes does not fit \(n) pblks") }
        let journal = (0..<Int(n)).map { LE.get(b, listOffset + 8 * $0, 8) }
        guard !journal.contains(0), Set(journal).count == journal.count else {
            throw .badIntent("journal pblks repeat or include pblk 0")
        }
        return Intent(records: Int(records), payloadBytes: Int(payload), journal: journal)
    }

    /// The payload for `entries` (lblk, encoded entry), records back to back.
    public static func payload(_ entries: [(lblk: Int, bytes: [UInt8])]) -> [UInt8] {
        var out: [UInt8] = []
        for (n, bytes) in entries {
            var lblk = [UInt8](repeating: 0, count: 8)
            LE.put(UInt64(n), 8, &lblk, 0)
            out += lblk + bytes
        }
        return out
    }

    /// The records of a payload, for entries of `entryLen` bytes; nil when the sizes disagree.
    public static func records(_ payload: [UInt8], count: Int, entryLen: Int) -> [(lblk: UInt64, bytes: [UInt8])]? {
        let size = recordBytes(entryLen: entryLen)
        guard count > 0, payload.count == count * size else { return nil }
        return (0..<count).map { i in
            (LE.get(payload, i * size, 8), Array(payload[i * size + 8..<(i + 1) * size]))
        }
    }
}

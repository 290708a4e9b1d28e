// SPDX-License-Identifier: Apache-2.0
/// Encodes and decodes entries for one geometry (one of the six variants).
public struct EntryCodec: Sendable {
    public let lenBytes: Int
    public let pblkBytes: Int
    public let slots: Int
    public let lblkSize: Int
    private let geometry: Geometry

    public init(_ g: Geometry) {
        lenBytes = g.lenBytes; pblkBytes = g.pblkBytes; slots = g.pblkPerLblk; lblkSize = g.lblkSize
        maxCompressedLength = PackedBlock.maxCompressedLength(lblkSize: lblkSize)
        geometry = g
    }

    public var entryLen: Int { lenBytes + pblkBytes * slots }
    @inlinable public var rawLength: Int { Self.rawLength(lenBytes: lenBytes) }
    /// The length that marks a raw (uncompressed) block: the largest the length field holds.
    @inlinable static func rawLength(lenBytes: Int) -> Int { lenBytes == 2 ? 0xFFFF : 0xFFFF_FFFF }
    /// The largest compressed length: compression must save at least one pblk.
    public let maxCompressedLength: Int

    /// Raw fields of an entry at `p`, without judging them.
    @inlinable @inline(__always) public func length(at p: UnsafeRawPointer) -> Int { Int(LE.get(p, lenBytes)) }
    @inlinable @inline(__always) public func slot(_ i: Int, at p: UnsafeRawPointer) -> Pblk {
        LE.get(p + lenBytes + i * pblkBytes, pblkBytes)
    }

    /// Whether `len` is a length an entry may hold: 0 (unallocated), the raw marker, or a
    /// compressed length that saves a pblk. The one home of that rule for both readers below.
    @inlinable public func isValidLength(_ len: Int) -> Bool { isValidLength(len, lenBytes: lenBytes) }
    @inlinable @inline(__always) func isValidLength(_ len: Int, lenBytes: Int) -> Bool {
        len == 0 || len == Self.rawLength(lenBytes: lenBytes) || len <= maxCompressedLength
    }

    /// How many leading slots an entry of length `len` uses.
    @inlinable public func usedSlots(length len: Int) -> Int { usedSlots(length: len, lenBytes: lenBytes) }
    @inlinable @inline(__always) func usedSlots(length len: Int, lenBytes: Int) -> Int {
        len == 0 ? 0 : len == Self.rawLength(lenBytes: lenBytes) ? slots : (len &+ Units.pblkSize &- 1) / Units.pblkSize
    }

    /// Checks the entry at `p` (entry_len bytes) and returns its length and how many leading
    /// slots it uses: the rules of `decode`, naming the first one broken.
    private func validate(_ p: UnsafeRawPointer) throws(EntryError) -> (length: Int, used: Int) {
        let len = length(at: p)
        guard isValidLength(len) else { throw .badLength(len) }
        let used = usedSlots(length: len)
        for i in 0..<slots {
            let v = slot(i, at: p)
            if i < used {
                guard v != 0 else { throw .badSlot(slot: i, value: 0) }
            } else if v != 0 {
                throw .badSlot(slot: i, value: v)
            }
        }
        return (len, used)
    }

    /// How many leading slots the entry at `p` uses when its length is valid and not 0 (it
    /// holds data); nil otherwise. The first question of both fast checks below.
    @inlinable @inline(__always)
    func usedSlotsOfData(_ p: UnsafeRawPointer, lenBytes: Int) -> Int? {
        let len = Int(LE.get(p, lenBytes))
        guard len != 0, isValidLength(len, lenBytes: lenBytes) else { return nil }
        return usedSlots(length: len, lenBytes: lenBytes)
    }

    /// Whether the slots after the first `used` of the slot array at `q` are all 0.
    @inlinable @inline(__always)
    func unusedSlotsAreZero(_ q: UnsafeRawPointer, used: Int, pblkBytes: Int) -> Bool {
        isAllZero(q + used &* pblkBytes, (slots &- used) &* pblkBytes)
    }

    /// The number of slots the entry at `p` uses when it is valid by `decode`'s rules, holds
    /// data, and names only pblks in `first ..< first + count` (one zone's data area); nil
    /// otherwise, and the caller takes the general path (`decode`, which says what is wrong).
    /// One pass over the slots, no array: fsck's pass 1 asks this of every entry of a device.
    /// A data area never starts at pblk 0, so a zero in a used slot fails the range check.
    /// The field widths are given by the caller, which switches over the variants and passes
    /// literals: inlined, every width test folds away.
    @inlinable @inline(__always)
    public func usedSlots(
        _ p: UnsafeRawPointer, within first: Pblk, count: Pblk,
        lenBytes: Int, pblkBytes: Int
    ) -> Int? {
        guard let used = usedSlotsOfData(p, lenBytes: lenBytes) else { return nil }
        let q = p + lenBytes
        for i in 0..<used {
            guard LE.get(q + i &* pblkBytes, pblkBytes) &- first < count else { return nil }
        }
        return unusedSlotsAreZero(q, used: used, pblkBytes: pblkBytes) ? used : nil
    }

    /// The pblks the entry at `p` names when they are one run `start ..< start + used` inside
    /// `first ..< first + count` and the entry is valid and holds data (as `usedSlots(_:within:
    /// count:lenBytes:pblkBytes:)` would say, for an entry it accepts: a run whose ends lie in
    /// the area lies in it, and holds no 0); nil otherwise, and the caller asks that. How
    /// writers lay a block out, so the cheapest question for fsck's pass 1: no slot is
    /// checked or claimed alone.
    @inlinable @inline(__always)
    public func run(
        _ p: UnsafeRawPointer, within first: Pblk, count: Pblk,
        lenBytes: Int, pblkBytes: Int
    ) -> (start: Pblk, used: Int)? {
        guard let used = usedSlotsOfData(p, lenBytes: lenBytes) else { return nil }
        let q = p + lenBytes
        let start = LE.get(q, pblkBytes)
        guard start &- first < count, UInt64(used) <= count &- (start &- first) else { return nil }
        var differs: UInt64 = 0
        for i in 1..<max(1, used) { differs |= LE.get(q + i &* pblkBytes, pblkBytes) ^ (start &+ UInt64(i)) }
        guard differs == 0, unusedSlotsAreZero(q, used: used, pblkBytes: pblkBytes) else { return nil }
        return (start, used)
    }

    /// Decodes and checks the entry at `p` (entry_len bytes).
    public func decode(_ p: UnsafeRawPointer) throws(EntryError) -> AllocationEntry {
        let (len, used) = try validate(p)
        if len == 0 { return .unallocated }
        let pblks = (0..<used).map { slot($0, at: p) }
        return len == rawLength ? .raw(pblks: pblks) : .compressed(length: len, pblks: pblks)
    }

    /// Decodes the entry at `p` and checks that every pblk it names is a data pblk: what a
    /// reader needs before it follows the entry.
    package func decodeChecked(_ p: UnsafeRawPointer) throws(EntryError) -> AllocationEntry {
        let e = try decode(p)
        try checkPlacement(e)
        return e
    }

    /// Throws when `e` names a pblk outside every zone's data area.
    package func checkPlacement(_ e: AllocationEntry) throws(EntryError) {
        for p in e.pblks where p > UInt64(Int.max) || geometry.dataZone(ofPblk: Int(p)) == nil {
            throw .outsideData(p)
        }
    }

    public func decode(_ bytes: [UInt8]) throws(EntryError) -> AllocationEntry {
        precondition(bytes.count >= entryLen)
        let r = bytes.withUnsafeBytes { b in
            Result { () throws(EntryError) -> AllocationEntry in try decode(b.baseAddress!) }
        }
        return try r.get()
    }

    package func decodeChecked(_ bytes: [UInt8]) throws(EntryError) -> AllocationEntry {
        let e = try decode(bytes)
        try checkPlacement(e)
        return e
    }

    /// Writes `entry` at `p` (entry_len bytes). The entry must fit this variant.
    public func encode(_ entry: AllocationEntry, to p: UnsafeMutableRawPointer) {
        switch entry {
        case .unallocated: encode(length: 0, to: p) { _ in 0 }
        case .compressed(let l, let pb):
            precondition(l >= 1 && l <= maxCompressedLength && pb.count == usedSlots(length: l))
            encode(length: l, to: p) { pb[$0] }
        case .raw(let pb):
            precondition(pb.count == slots)
            encode(length: rawLength, to: p) { pb[$0] }
        }
    }

    /// Writes an entry of length `len` whose used slot i names `pblk(i)`, the rest 0; for
    /// writers that lay out many entries without building an `AllocationEntry` each.
    @inline(__always)
    public func encode(length len: Int, to p: UnsafeMutableRawPointer, pblk: (Int) -> Pblk) {
        LE.put(UInt64(len), lenBytes, p)
        let used = usedSlots(length: len)
        for i in 0..<slots {
            let v: Pblk = i < used ? pblk(i) : 0
            precondition(v < (1 as UInt64) << UInt64(pblkBytes * 8))
            LE.put(v, pblkBytes, p + lenBytes + i * pblkBytes)
        }
    }

    public func encode(_ entry: AllocationEntry) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: entryLen)
        b.withUnsafeMutableBytes { encode(entry, to: $0.baseAddress!) }
        return b
    }
}

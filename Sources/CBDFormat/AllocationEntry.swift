/// One entry of a zone's logical block allocation table: where a logical block's bytes are.
public enum AllocationEntry: Equatable, Sendable {
    /// `len` 0, all slots 0: the block reads as zeros.
    case unallocated
    /// `len` 1 ... lblk_size - 4096: LZ4 data in the first ceil(len/4096) pblks.
    case compressed(length: Int, pblks: [Pblk])
    /// `len` all ones: every slot names the pblk of that 4 KiB piece.
    case raw(pblks: [Pblk])

    /// The pblks this entry uses, in slot order.
    public var pblks: [Pblk] {
        switch self {
        case .unallocated: return []
        case .compressed(_, let p), .raw(let p): return p
        }
    }

    public var className: String {
        switch self {
        case .unallocated: return "unallocated"
        case .compressed: return "compressed"
        case .raw: return "raw"
        }
    }
}

/// Why an entry is malformed (consistency rule 2).
public enum EntryError: Error, Equatable, CustomStringConvertible, Sendable {
    /// `len` is neither 0, a compressed length, nor all ones.
    case badLength(Int)
    /// A slot that must be 0 is not, or one that must name a pblk is 0.
    case badSlot(slot: Int, value: Pblk)

    public var description: String {
        switch self {
        case .badLength(let l): return "invalid length \(l)"
        case .badSlot(let s, let v): return v == 0 ? "slot \(s) is empty but must name a pblk"
                                                   : "slot \(s) holds pblk \(v) but must be 0"
        }
    }
}

/// Encodes and decodes entries for one geometry (one of the six variants).
public struct EntryCodec: Sendable {
    public let lenBytes: Int
    public let pblkBytes: Int
    public let slots: Int
    public let lblkSize: Int

    public init(_ g: Geometry) {
        lenBytes = g.lenBytes; pblkBytes = g.pblkBytes; slots = g.pblkPerLblk; lblkSize = g.lblkSize
    }

    public var entryLen: Int { lenBytes + pblkBytes * slots }
    public var rawLength: Int { lenBytes == 2 ? 0xFFFF : 0xFFFF_FFFF }
    /// The largest compressed length: compression must save at least one pblk.
    public var maxCompressedLength: Int { lblkSize - Units.pblkSize }

    /// Raw fields of an entry at `p`, without judging them.
    @inline(__always) public func length(at p: UnsafeRawPointer) -> Int { Int(LE.get(p, lenBytes)) }
    @inline(__always) public func slot(_ i: Int, at p: UnsafeRawPointer) -> Pblk {
        LE.get(p + lenBytes + i * pblkBytes, pblkBytes)
    }

    /// How many leading slots an entry of length `len` uses.
    public func usedSlots(length len: Int) -> Int {
        len == 0 ? 0 : len == rawLength ? slots : (len + Units.pblkSize - 1) / Units.pblkSize
    }

    /// Decodes and checks the entry at `p` (entry_len bytes).
    public func decode(_ p: UnsafeRawPointer) throws(EntryError) -> AllocationEntry {
        let len = length(at: p)
        guard len == 0 || len == rawLength || len <= maxCompressedLength else { throw .badLength(len) }
        let used = usedSlots(length: len)
        var pblks: [Pblk] = []
        pblks.reserveCapacity(used)
        for i in 0..<slots {
            let v = slot(i, at: p)
            if i < used {
                guard v != 0 else { throw .badSlot(slot: i, value: 0) }
                pblks.append(v)
            } else if v != 0 {
                throw .badSlot(slot: i, value: v)
            }
        }
        if len == 0 { return .unallocated }
        return len == rawLength ? .raw(pblks: pblks) : .compressed(length: len, pblks: pblks)
    }

    public func decode(_ bytes: [UInt8]) throws(EntryError) -> AllocationEntry {
        precondition(bytes.count >= entryLen)
        let r = bytes.withUnsafeBytes { b in
            Result { () throws(EntryError) -> AllocationEntry in try decode(b.baseAddress!) }
        }
        return try r.get()
    }

    /// Writes `entry` at `p` (entry_len bytes). The entry must fit this variant.
    public func encode(_ entry: AllocationEntry, to p: UnsafeMutableRawPointer) {
        let len: Int
        switch entry {
        case .unallocated: len = 0
        case .compressed(let l, let pb):
            precondition(l >= 1 && l <= maxCompressedLength && pb.count == usedSlots(length: l))
            len = l
        case .raw(let pb):
            precondition(pb.count == slots)
            len = rawLength
        }
        LE.put(UInt64(len), lenBytes, p)
        let pb = entry.pblks
        for i in 0..<slots {
            let v: Pblk = i < pb.count ? pb[i] : 0
            precondition(pblkBytes == 8 || v < (1 as UInt64) << UInt64(pblkBytes * 8))
            LE.put(v, pblkBytes, p + lenBytes + i * pblkBytes)
        }
    }

    public func encode(_ entry: AllocationEntry) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: entryLen)
        b.withUnsafeMutableBytes { encode(entry, to: $0.baseAddress!) }
        return b
    }
}

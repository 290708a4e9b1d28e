// SPDX-License-Identifier: Apache-2.0
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

    /// The same entry on other pblks (a clone, a moved block): `fresh` replaces the slots in order.
    package func withPblks(_ fresh: [Pblk]) -> AllocationEntry {
        switch self {
        case .unallocated: return .unallocated
        case .compressed(let len, _): return .compressed(length: len, pblks: fresh)
        case .raw: return .raw(pblks: fresh)
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

/// Why an entry cannot be used: malformed (consistency rule 2) or naming a pblk that is
/// not a data pblk (rule 3).
public enum EntryError: Error, Equatable, CustomStringConvertible, Sendable {
    /// `len` is neither 0, a compressed length, nor all ones.
    case badLength(Int)
    /// A slot that must be 0 is not, or one that must name a pblk is 0.
    case badSlot(slot: Int, value: Pblk)
    /// A used slot names the header, a bitmap, a table pblk, or a pblk past the end.
    case outsideData(Pblk)

    public var description: String {
        switch self {
        case .badLength(let l): return "invalid length \(l)"
        case .badSlot(let s, let v):
            return v == 0
                ? "slot \(s) is empty but must name a pblk"
                : "slot \(s) holds pblk \(v) but must be 0"
        case .outsideData(let p): return "names pblk \(p) outside the data area"
        }
    }

    /// The error a reader of lblk `n` on `path` reports.
    package func readError(path: String, lblk n: Int) -> CBDError {
        if case .outsideData(let p) = self {
            return CBDError("\(path): logical block \(n): entry names pblk \(p) outside the data area", kind: .corrupt)
        }
        return CBDError("\(path): logical block \(n): corrupt entry: \(self)", kind: .corrupt)
    }
}

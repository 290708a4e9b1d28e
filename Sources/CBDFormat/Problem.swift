/// One inconsistency found by the checker, with what fixing it means.
public struct Problem: Sendable {
    public enum Kind: String, Sendable, Codable {
        case malformedEntry = "malformed_entry"
        case slotOutsideData = "slot_outside_data"
        case entryBeyondSize = "entry_beyond_size"
        case tablePadding = "table_padding"
        case corruptData = "corrupt_data"
        case crossLinked = "cross_linked"
        case leakedPblks = "leaked_pblks"
        case unmarkedPblks = "unmarked_pblks"
        case bitmapPadding = "bitmap_padding"
    }

    public var kind: Kind
    /// What is wrong, with its numbers (zone, lblk, pblk, byte range).
    public var message: String
    /// The question asked before fixing, e2fsck style ("Clear", "Fix", "Clone").
    public var action: String
    /// Whether -p may fix it without asking: only fixes that lose no data.
    public var preenSafe: Bool
    public var zone: Int?
    public var lblk: Int?
    public var pblks: [Int] = []
    /// Logical blocks whose contents the problem puts in doubt.
    public var suspectLblks: [Int] = []
    public var fixed = false
}

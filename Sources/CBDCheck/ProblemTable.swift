// SPDX-License-Identifier: Apache-2.0
import CBDFormat
/// Every problem fsck.cbd can find, described once, as e2fsck's problem.c: the pass that
/// finds it, the question asked before fixing it, whether preening (-p) may fix it without
/// asking (only fixes that lose no data), and its message.
public enum ProblemKind: String, CaseIterable, Sendable, Codable {
    /// The header holds an intent record: a write of table entries was interrupted.
    case interruptedUpdate = "interrupted_update"
    /// DIRTY is set. Raised only by a read-only check: in the other modes, clearing the flag
    /// after a check that leaves the device consistent is part of the check (as e2fsck does
    /// with the valid flag), not a repair.
    case notClosedCleanly = "not_closed_cleanly"
    /// Reserved header bytes that are not zero, in a header otherwise valid.
    case headerReserved = "header_reserved"
    /// Pblk 0 is not a usable header; the geometry was found from the zones.
    case headerLost = "header_lost"
    /// The device is shorter than its header says (a truncated image).
    case deviceShort = "device_short"
    /// An entry names pblks past the end of a truncated device: its data is gone.
    case dataPastEnd = "data_past_end"
    case malformedEntry = "malformed_entry"
    case slotOutsideData = "slot_outside_data"
    case entryBeyondSize = "entry_beyond_size"
    case tablePadding = "table_padding"
    case corruptData = "corrupt_data"
    /// A pblk named by two entries; the later owner gets a copy of its own.
    case crossLinked = "cross_linked"
    /// A compressed owner of a shared pblk that no longer decompresses: its bytes belong to
    /// the other owner, so it is cleared rather than given a copy of them.
    case crossLinkedCorrupt = "cross_linked_corrupt"
    /// A later owner of a shared pblk for which no free pblk is left to copy into: cleared.
    case crossLinkedNoRoom = "cross_linked_no_room"
    case leakedPblks = "leaked_pblks"
    case unmarkedPblks = "unmarked_pblks"
    case bitmapPadding = "bitmap_padding"
    /// Orphaned data that goes back to the lblks whose entries were lost (pass 3).
    case orphansRelinked = "orphans_relinked"
    /// Orphaned data saved to lost+found, then freed; or kept in use with nowhere to save it.
    case orphanedData = "orphaned_data"

    /// One row of the table: the pass that finds it, the question asked before fixing it,
    /// whether -p fixes it without asking (only where the fix loses no data), and its message
    /// from the facts of one occurrence. One switch, no default: a new kind must fill its row.
    var row: ProblemRow {
        switch self {
        case .interruptedUpdate:
            return ProblemRow(.header, .replay, preen: true) { f in
                "Header: a write of \(f.detail) table entr\(f.detail == "1" ? "y" : "ies") was interrupted "
                    + "(\(plural("logical block", f.others)))"
            }
        case .notClosedCleanly:
            return ProblemRow(.header, .clear, preen: true) { f in
                "Header: the device was not closed cleanly (DIRTY)" + (f.detail.isEmpty ? "" : "; \(f.detail)")
            }
        case .headerReserved:
            return ProblemRow(.header, .clear, preen: true) { f in
                "Header: reserved byte at offset \(f.detail) is not zero"
            }
        case .headerLost:
            return ProblemRow(.header, .write, preen: false) { f in "Header: pblk 0 is not a CBD header: \(f.detail)" }
        case .deviceShort:
            return ProblemRow(.header, .grow, preen: false) { f in
                "Header: the device has only \(f.detail)"
            }
        case .dataPastEnd:
            return ProblemRow(.tables, .clear, preen: false) { f in
                "\(block(f)) has its data in pblk \(f.detail), past the end of the truncated device"
            }
        case .malformedEntry:
            return ProblemRow(.tables, .clear, preen: false) { f in "\(block(f)) has a malformed entry: \(f.detail)" }
        case .slotOutsideData:
            return ProblemRow(.tables, .clear, preen: false) { f in
                "\(block(f)) names pblk \(f.detail), which is not a data pblk"
            }
        case .entryBeyondSize:
            return ProblemRow(.tables, .clear, preen: true) { f in
                "Logical block \(f.lblk ?? 0), beyond the logical size (\(f.nrLblk) blocks), has a non-zero entry"
            }
        case .tablePadding:
            return ProblemRow(.tables, .clear, preen: true) { f in
                "Zone \(f.zone ?? 0): table padding after the last entry is not zero"
            }
        case .corruptData:
            return ProblemRow(.tables, .clear, preen: false) { f in
                "\(block(f)) does not decompress to \(f.lblkSize) bytes"
            }
        case .crossLinked:
            return ProblemRow(.sharedPblks, .clone, preen: false) { f in shares(f) }
        case .crossLinkedCorrupt:
            return ProblemRow(.sharedPblks, .clear, preen: false) { f in
                "\(shares(f)) and does not decompress to \(f.lblkSize) bytes"
            }
        case .crossLinkedNoRoom:
            return ProblemRow(.sharedPblks, .clear, preen: false) { f in
                "\(shares(f)) and no free pblk is left for a copy"
            }
        case .leakedPblks:
            return ProblemRow(.bitmaps, .free, preen: true) { f in
                "Zone \(f.zone ?? 0): pblks marked in use but used by no entry: \(f.detail)"
            }
        case .unmarkedPblks:
            return ProblemRow(.bitmaps, .mark, preen: true) { f in
                "Zone \(f.zone ?? 0): pblks in use but not marked: \(f.detail) (\(plural("logical block", f.others)))"
            }
        case .bitmapPadding:
            return ProblemRow(.bitmaps, .set, preen: true) { f in
                "Zone \(f.zone ?? 0): padding bits past its \(f.detail) data pblks are not set"
            }
        case .orphansRelinked:
            return ProblemRow(.orphans, .relink, preen: false) { f in
                "Zone \(f.zone ?? 0): \(pblksHold(f)) the data of \(lblkRanges(f.others, f)), whose "
                    + (f.others.count == 1 ? "entry was lost" : "entries were lost")
            }
        case .orphanedData:
            return ProblemRow(.orphans, .save, preen: true) { f in
                "Zone \(f.zone ?? 0): \(pblksHold(f)) data no entry names (\(f.blocks) block\(f.blocks == 1 ? "" : "s"))"
                    + mayHaveHeld(f)
            }
        }
    }

    /// The pass that finds it.
    public var pass: CheckPass { row.pass }
    /// The question asked before fixing it.
    public var prompt: Prompt { row.prompt }
    /// Whether -p fixes it without asking: true only where the fix loses no data.
    public var preenSafe: Bool { row.preenSafe }
    /// The message, from the facts of one occurrence.
    func message(_ f: Problem.Facts) -> String { row.message(f) }
}

/// A row of the problem table (see `ProblemKind.row`).
struct ProblemRow {
    let pass: CheckPass
    let prompt: Prompt
    let preenSafe: Bool
    let message: (Problem.Facts) -> String

    init(_ pass: CheckPass, _ prompt: Prompt, preen: Bool, _ message: @escaping (Problem.Facts) -> String) {
        self.pass = pass
        self.prompt = prompt
        self.preenSafe = preen
        self.message = message
    }
}

/// "Logical block 5 (bytes 20480-24575)".
private func block(_ f: Problem.Facts) -> String {
    let n = f.lblk ?? 0
    return "Logical block \(n) (bytes \(n * f.lblkSize)-\((n + 1) * f.lblkSize - 1))"
}

/// "logical blocks 0-29 (bytes 0-1966079), 40 (bytes ...)": runs of lblks with their bytes,
/// at most eight runs then "and N more" (the JSON report lists every lblk).
private func lblkRanges(_ lblks: [Int], _ f: Problem.Facts) -> String {
    var runs: [Range<Int>] = []
    for n in lblks {
        if let last = runs.last, last.upperBound == n {
            runs[runs.count - 1] = last.lowerBound..<n + 1
        } else {
            runs.append(n..<n + 1)
        }
    }
    let shown = runs.prefix(8).map { r in
        (r.count == 1 ? "\(r.lowerBound)" : "\(r.lowerBound)-\(r.upperBound - 1)")
            + " (bytes \(r.lowerBound * f.lblkSize)-\(r.upperBound * f.lblkSize - 1))"
    }
    return "logical block\(lblks.count == 1 ? "" : "s") " + shown.joined(separator: ", ")
        + (runs.count > 8 ? " and \(runs.count - 8) more runs" : "")
}

/// "; logical blocks 11-15 (...), whose entries were lost, or logical blocks 3 (...), 6 (...),
/// which shared pblks, may have held it": where orphaned data may come from (nothing when unknown).
private func mayHaveHeld(_ f: Problem.Facts) -> String {
    var who: [String] = []
    if !f.others.isEmpty {
        let lost = f.others.count == 1 ? "entry was lost" : "entries were lost"
        who.append("\(lblkRanges(f.others, f)), whose \(lost)")
    }
    if !f.crossLinked.isEmpty { who.append("\(lblkRanges(f.crossLinked, f)), which shared pblks") }
    return who.isEmpty ? "" : "; " + who.joined(separator: ", or ") + ", may have held it"
}

/// "pblks 70-136 hold", "pblk 59 holds".
private func pblksHold(_ f: Problem.Facts) -> String {
    f.pblks.count == 1 ? "pblk \(f.detail) holds" : "pblks \(f.detail) hold"
}

private func shares(_ f: Problem.Facts) -> String {
    "\(block(f)) shares \(plural("pblk", f.pblks)) with \(plural("logical block", f.others))"
}

/// "pblk 5", "pblks 5,6", at most eight numbers then "and N more" (the JSON report has them all).
private func plural(_ noun: String, _ numbers: [Int]) -> String {
    let shown = numbers.prefix(8).map(String.init).joined(separator: ",")
    let more = numbers.count > 8 ? " and \(numbers.count - 8) more" : ""
    return "\(noun)\(numbers.count == 1 ? "" : "s") \(shown)\(more)"
}

/// The passes of a check, in the order they run.
public enum CheckPass: Int, Sendable, Comparable {
    case header = 0, tables, sharedPblks, bitmaps, orphans

    public var heading: String {
        switch self {
        case .header: return "Pass 0: checking the header"
        case .tables: return "Pass 1: checking allocation tables"
        case .sharedPblks: return "Pass 1B: pblks claimed by more than one logical block"
        case .bitmaps: return "Pass 2: checking allocation bitmaps"
        case .orphans: return "Pass 3: data that no entry names"
        }
    }

    /// The number fsck's -C progress lines give this pass (e2fsck's convention).
    public var progressNumber: Int { self == .orphans ? 3 : self == .bitmaps ? 2 : 1 }

    public static func < (a: CheckPass, b: CheckPass) -> Bool { a.rawValue < b.rawValue }
}

/// The questions of fsck, e2fsck style.
public enum Prompt: String, Sendable {
    case clear = "Clear", clone = "Clone", free = "Free", mark = "Mark", set = "Set", replay = "Replay"
    case relink = "Relink", save = "Save", write = "Write", grow = "Grow"
}

/// One inconsistency found by the checker: its kind (the table above says the rest) and
/// the facts of this occurrence, each said once.
public struct Problem: Sendable {
    /// What a message and a report need: where it is, and the geometry's sizes.
    public struct Facts: Sendable {
        /// The zone it is in, when it is in one.
        public var zone: Int?
        /// The logical block it concerns, when it concerns one.
        public var lblk: Int?
        public var lblkSize = 0
        public var nrLblk = 0
        /// The data pblks it names: shared, leaked or unmarked ones, or those a bad entry holds.
        public var pblks: [Int] = []
        /// Other logical blocks involved (the other owners of a shared pblk, the owners of unmarked ones).
        public var others: [Int] = []
        /// Logical blocks of the zone that pass 1B found sharing pblks (orphaned data: they
        /// may have held it).
        public var crossLinked: [Int] = []
        /// How many blocks (orphaned data: the pieces it splits into).
        public var blocks = 0
        /// The variable part of a message: an entry error, a pblk, a list of ranges, a count.
        public var detail = ""
    }

    public let kind: ProblemKind
    public let facts: Facts
    /// Logical blocks whose contents the problem puts in doubt.
    public var suspectLblks: [Int]
    public var fixed = false

    init(_ kind: ProblemKind, _ facts: Facts, suspectLblks: [Int] = []) {
        self.kind = kind
        self.facts = facts
        self.suspectLblks = suspectLblks
    }

    public var zone: Int? { facts.zone }
    public var lblk: Int? { facts.lblk }
    public var pblks: [Int] { facts.pblks }
    public var message: String { kind.message(facts) }
    /// The question asked before fixing it ("Clear", "Clone", "Free"...).
    public var action: String { kind.prompt.rawValue }
    public var preenSafe: Bool { kind.preenSafe }
}

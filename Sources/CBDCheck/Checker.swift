// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice
import CBDVolume
/// fsck for CBD devices: verifies every consistency rule of format-v1 and repairs what it
/// finds, keeping every byte that can be kept.
///
/// Pass 1 (`Pass1.swift`) reads each zone's table on all cores, checks every entry and
/// records which data pblks are claimed; pass 1B (`Pass1B.swift`) finds the owners of pblks
/// claimed twice and clones or clears them; pass 2 (`Pass2.swift`) compares each zone's
/// bitmap with the claims. Repairs are decided as problems are found and written at the end
/// in copy-on-write order (`Repairs.swift`). Each problem is described in `ProblemTable.swift`.
public final class Checker {
    public enum Mode: Sendable { case readOnly, fixAll, preen, interactive }
    public enum Answer: Sendable { case yes, no, all, quit }

    public struct Options {
        public var mode: Mode = .readOnly
        /// Decompress every compressed block (rule 5), not only the shared ones.
        public var verifyData = false
        /// Asked per problem in interactive mode.
        public var ask: ((Problem) -> Answer)?
        /// Pass 1 gathers the claims of entries that stay in their zone per zone (`ZoneClaims`);
        /// off, every entry is claimed one by one. The same findings either way: tests compare them.
        package var gatherClaims = true
        /// Where orphaned data is saved before its pblks are freed (pass 3); without one, a
        /// repairing run keeps orphans in use and reports them unfixed.
        public var lostFound: LostFound?
        /// Called with each problem as it is decided (for printing as it goes).
        public var report: ((Problem) -> Void)?
        /// (pass, done, total)
        public var progress: ((CheckPass, Int, Int) -> Void)?
        /// Why the device was left DIRTY, when a server left a note (`FailureNote`).
        public var dirtyReason: String?
        public init() {}
    }

    public let device: BlockDevice
    public internal(set) var header: Header
    public let geometry: Geometry
    let codec: EntryCodec
    let options: Options

    // MARK: What the run found

    public internal(set) var problems: [Problem] = []
    public internal(set) var stats = CheckStats()
    public internal(set) var cancelled = false
    /// Preen met a problem it may not fix: a person must run the check.
    public internal(set) var stoppedForPerson = false
    public internal(set) var modified = false
    /// Interactive mode: the person answered "all".
    var fixEverything = false

    // MARK: What the passes share

    /// Every zone's bitmap (4 KiB a zone), as read and then as repaired.
    var bitmaps: ZoneBitmaps
    /// Zones whose bitmap the repairs rewrite.
    var changedBitmaps: Set<Int> = []
    /// Which data pblks some entry uses.
    var claims: ClaimMap
    /// Data pblks claimed more than once (pass 1B's work).
    var duplicates: Set<Int> = []
    /// Logical blocks that pass 1B found sharing pblks, on either side: an entry damaged to
    /// name another block's pblks leaves its own data orphaned, so pass 3 names them too.
    var crossLinkedLblks: Set<Int> = []
    /// Owners of claimed pblks whose bit is clear, for pass 2's message.
    var unmarkedOwners: [Int: [Int]] = [:]
    /// Zones pass 1 gathered and then scanned again entry by entry (see `merge`): none on a
    /// clean device, or the fast path was lost (a test looks).
    package internal(set) var rescannedZones = 0

    // MARK: Repairs decided

    /// Entries to change, by lblk (a missing key: the entry stays as it is).
    var newEntries: [Int: EntryRepair] = [:]
    /// Pblk copies for clones, written before the entries that name them.
    var clonedData: [(from: Int, to: Int)] = []
    /// Zones whose table padding is cleared.
    var clearPadding: Set<Int> = []
    /// Runs of data pblks marked in use, named by no entry, not all zeros (pass 2 -> pass 3).
    var orphanRuns: [Range<Int>] = []
    /// Orphans to save to lost+found before the repairs free their pblks.
    var orphansToSave: [OrphanPiece] = []
    /// Lblks whose bad entry was reported but kept (answered no): never read or cloned.
    var keptBad: Set<Int> = []

    /// What pass 0 found wrong with pblk 0 itself (the header the check goes on with is
    /// `header`).
    var headerFinding: OpenedDevice.HeaderFinding?
    /// The header must be written by the repairs (found again, or its reserved bytes cleared).
    var headerNeedsWrite = false
    /// Pblks from here on lay past the end of a truncated device (nil: none did).
    var truncatedAt: Int?
    /// The truncated device is grown back to its header's size by the repairs.
    var growBack = false

    /// Opens the device (`OpenedDevice`). A header with reserved bytes set, one on a truncated
    /// device, or a destroyed one whose geometry the zones show without doubt is a problem of
    /// pass 0, not the end; any other throws (`HeaderRecovery.Failure` when the zones fit no
    /// layout, or several).
    public convenience init(device: BlockDevice, options: Options) throws {
        try self.init(try OpenedDevice.recovering(device), options: options)
    }

    /// The check of a device already opened (with `.interruptedUpdate`: pass 0 replays it).
    public init(_ opened: OpenedDevice, options: Options) throws {
        (self.device, header, geometry) = (opened.device, opened.header, opened.geometry)
        headerFinding = opened.finding
        if case .deviceShort(let has) = headerFinding { truncatedAt = has / Units.pblkSize }
        codec = opened.codec
        claims = ClaimMap(geometry)
        bitmaps = ZoneBitmaps(geometry: geometry)
        self.options = options
    }

    public var isDirty: Bool { header.isDirty }
    /// Pblk 0 itself needs a repair (reserved bytes, a truncated device, a header found again):
    /// preen checks such a device even when its flags say clean.
    public var headerNeedsRepair: Bool { headerFinding != nil }

    /// Data pblks the device's bitmaps mark in use, as read by the run.
    public var markedPblks: Int { bitmaps.markedPblks }

    /// Whether a read-only check (`fsck.cbd -n`) finds `opened` consistent: no problem, DIRTY
    /// included. What `cbd info --check` asks.
    public static func findsConsistent(_ opened: OpenedDevice) throws -> Bool {
        var options = Options()
        options.mode = .readOnly
        let check = try Checker(opened, options: options)
        try check.run()
        return check.problems.isEmpty
    }

    /// Runs every pass and, unless read-only, writes the accepted repairs.
    public func run() throws {
        options.progress?(.header, 0, 1)
        try checkHeader()
        try readBitmaps()
        try pass1()
        holdUnclaimedMarkedPblks()
        if !stop { options.progress?(.sharedPblks, 0, 1) }
        if !stop { try pass1B() }
        if !stop { try pass2() }
        if !stop { try pass3() }
        guard !stop else {
            // Stopped for a person or cancelled: no repair is written, so none was made (a
            // replay of interrupted entries is written at once, before the passes).
            for i in problems.indices where problems[i].kind != .interruptedUpdate { problems[i].fixed = false }
            return
        }
        guard options.mode != .readOnly else { return }
        do { try writeRepairs() } catch {
            // What was decided was not written: nothing counts as corrected (fsck(8)'s exit 1).
            for i in problems.indices where problems[i].kind != .interruptedUpdate { problems[i].fixed = false }
            throw error
        }
    }

    var stop: Bool { cancelled || stoppedForPerson }

    /// Pass 0: an interrupted entry write is completed first (the passes then see every entry
    /// whole); a DIRTY device is reported (a read-only check cannot call it clean).
    private func checkHeader() throws {
        try checkHeaderFinding()
        if let intent = header.intent {
            let journal = EntryJournal(device: device, geometry: geometry)
            var f = facts()
            f.others = try journal.saved(intent).map(\.lblk)
            f.detail = "\(f.others.count)"
            if decide(Problem(.interruptedUpdate, f, suspectLblks: f.others)) {
                _ = try journal.replay(header: &header)
                modified = true
            }
        }
        // DIRTY is a problem in every mode: -n reports it, -p and -y clear it once the passes
        // have found the device sound (the repairs clear it last), so that every mode counts it.
        if header.isDirty {
            var f = facts()
            f.detail = options.dirtyReason ?? ""
            decide(Problem(.notClosedCleanly, f))
        }
    }

    /// fsck(8) exit status for this run: 0 clean, 1 corrected, 4 left uncorrected, 32 cancelled.
    public var exitCode: Int32 {
        var code: Int32 = 0
        if problems.contains(where: { $0.fixed }) && options.mode != .readOnly { code |= 1 }
        if problems.contains(where: { !$0.fixed }) || stoppedForPerson { code |= 4 }
        if cancelled { code |= 32 }
        return code
    }

    // MARK: Decisions

    /// Records a problem and decides whether to fix it, by mode; returns true to fix.
    @discardableResult
    func decide(_ p: Problem) -> Bool {
        var p = p
        switch options.mode {
        case .readOnly: p.fixed = false
        case .fixAll: p.fixed = true
        case .preen:
            p.fixed = p.preenSafe
            if !p.preenSafe { stoppedForPerson = true }
        case .interactive:
            if fixEverything {
                p.fixed = true
            } else {
                switch options.ask?(p) ?? .no {
                case .yes: p.fixed = true
                case .all: p.fixed = true; fixEverything = true
                case .no: p.fixed = false
                case .quit: p.fixed = false; cancelled = true
                }
            }
        }
        problems.append(p)
        options.report?(p)
        return p.fixed
    }

    /// The facts every message of lblk `n` (or zone `z`) starts from.
    func facts(lblk n: Int? = nil, zone z: Int? = nil) -> Problem.Facts {
        var f = Problem.Facts()
        f.lblk = n
        f.zone = z
        f.lblkSize = geometry.lblkSize
        f.nrLblk = geometry.nrLblk
        return f
    }

    // MARK: Claims and counts

    /// Adds an entry to the statistics (`by: -1` takes back one counted before it was cleared).
    func count(_ e: AllocationEntry, by k: Int = 1) {
        switch e {
        case .unallocated: break
        case .compressed(_, let p): stats.compressed += k; stats.usedPblks += k * p.count
        case .raw(let p): stats.raw += k; stats.usedPblks += k * p.count
        }
    }

    /// Records that lblk `n` uses `pblks`: a second claim makes a duplicate for pass 1B.
    func claim<S: Sequence>(_ pblks: S, lblk: Int) where S.Element: BinaryInteger {
        var seen: (zone: Int, bitmap: Bitmap)?  // the zone last seen (an entry's pblks share one)
        for pblk in pblks {
            let p = Int(pblk)
            guard case .data(let z, let k) = geometry.place(ofPblk: p) else { continue }
            if !claims.claimIfFree(z * Units.pblksPerBitmap + k) { duplicates.insert(p) }
            if seen?.zone != z { seen = (z, bitmaps[z]) }
            if seen?.bitmap.isSet(k) != true { unmarkedOwners[p, default: []].append(lblk) }
        }
    }

    /// Repair saves before it frees: what the bitmaps mark in use and no entry claims may be
    /// orphaned data (pass 2 and 3 find it), so no clone or journal pblk is put there.
    func holdUnclaimedMarkedPblks() {
        for z in bitmaps.markedZones { claims.hold(unclaimedIn: bitmaps[z], zone: z) }
    }

    /// Frees a data pblk in the claims and in its bitmap. An entry on disk still names it until
    /// the repairs are written, so it is reserved: no clone or journal may take it before.
    func freeAfterRepairs(_ p: Int) {
        guard let i = claims.index(p), case .data(let z, let k) = geometry.place(ofPblk: p) else { return }
        claims.release(i)
        claims.reserve(i)
        if bitmaps[z].isSet(k) { bitmaps[z].clear(k); changedBitmaps.insert(z) }
    }
}

/// What a repair does to one entry.
enum EntryRepair {
    /// The block becomes unallocated (reads as zeros).
    case clear
    /// The entry is replaced, e.g. by a clone's.
    case rewrite(AllocationEntry)

    /// The entry written.
    var entry: AllocationEntry {
        switch self {
        case .clear: return .unallocated
        case .rewrite(let e): return e
        }
    }
}

/// Totals for the summary line.
public struct CheckStats: Sendable, Codable {
    public var compressed = 0
    public var raw = 0
    public var usedPblks = 0
}

extension CheckStats {
    /// The compression ratio of the blocks counted.
    public func compressionRatio(lblkSize: Int) -> Double {
        Ratios.compression(allocatedBlocks: compressed + raw, lblkSize: lblkSize, pblks: usedPblks)
    }
}

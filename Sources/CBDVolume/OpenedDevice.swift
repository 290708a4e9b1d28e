// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice

/// A CBD device, opened: the one place where pblk 0 is read and judged, as e2fsprogs'
/// `ext2fs_open` is for ext2. It holds what every reader past the header needs (the header,
/// the geometry, the entry codec, the journal and the metadata cache) and decides, once, what
/// a device with an interrupted table update, a DIRTY flag or a damaged pblk 0 may be used for.
/// Volume, fsck, resize, convert, cbddump, cbd map and info and the nbdkit plugin start here;
/// `CBDDevice` below only moves bytes.
public struct OpenedDevice {
    /// Where the bytes are: the device given, or, for a truncated image opened with
    /// `.recoverHeader`, that device reading as zeros up to its header's size.
    public let device: any BlockDevice
    public var header: Header
    public let geometry: Geometry
    /// What was wrong with pblk 0 when `.recoverHeader` got past it; nil for a usable header.
    public let finding: HeaderFinding?

    /// What an opener accepts beyond a valid, whole header.
    public struct Allowing: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// A header holding an intent record (an interrupted entry write): for fsck, which
        /// replays it, cbddump, which shows it, and a Volume, which replays it before writing.
        public static let interruptedUpdate = Allowing(rawValue: 1)
        /// A pblk 0 that cannot be used as it is: reserved bytes set, a truncated device, and,
        /// given a `search` (fsck's `OpenedDevice.recovering`), a header destroyed but shown
        /// again by the zones: for fsck and `cbd image --metadata`.
        public static let damagedHeader = Allowing(rawValue: 2)
    }

    /// What pblk 0 had wrong, when `.damagedHeader` got past it.
    public enum HeaderFinding: Sendable {
        /// Reserved bytes not zero (the offset of the first); the fields are kept.
        case reservedBytes(offset: Int)
        /// The device is shorter than the header says: its size in bytes.
        case deviceShort(deviceBytes: Int)
        /// Pblk 0 is not a usable header (why); the geometry was found from the zones.
        case lost(reason: String, HeaderRecovery.Candidate)
    }

    /// Finds the layout of a device whose pblk 0 is unusable (the reason given), or throws.
    public typealias LayoutSearch = (any BlockDevice, String) throws -> HeaderRecovery.Candidate

    /// Opens `device` as a CBD. Without `allowing`, only a valid header with no interrupted
    /// update is accepted; every refusal is a `CBDError` naming the device and what to run.
    public init(_ device: any BlockDevice, allowing: Allowing = [], search: LayoutSearch? = nil) throws {
        do {
            (header, geometry) = try Self.readHeader(device)
            self.device = device
            finding = nil
        } catch {
            guard allowing.contains(.damagedHeader) else { throw error }
            switch try HeaderRecovery.diagnose(device) {
            case .usable, .resizeMarker, .foreign:
                throw error
            case .unusable where search == nil:
                throw error
            case .reservedBytes(let h, let offset):
                (header, geometry) = (h, try Geometry(header: h))
                self.device = device
                finding = .reservedBytes(offset: offset)
            case .deviceShort(let h, let g, let has):
                (header, geometry) = (h, g)
                // Past the end the device reads as zeros, as it will once grown back.
                self.device = ZeroTail(device, size: g.physicalBytes)
                finding = .deviceShort(deviceBytes: has)
            case .unusable(let why):
                guard let c = try search?(device, why) else { throw error }
                (header, geometry) = (c.header, c.geometry)
                self.device = device
                finding = .lost(reason: why, c)
            }
        }
        if !allowing.contains(.interruptedUpdate) { try requireWholeEntries() }
    }

    public var codec: EntryCodec { EntryCodec(geometry) }
    package var journal: EntryJournal { EntryJournal(device: device, geometry: geometry) }
    /// A fresh cache of this device's bitmaps and table pblks.
    package func metadataCache() -> MetadataCache { MetadataCache(device: device, geometry: geometry) }

    /// Refuses a device whose header holds an intent record: its entries are not all whole
    /// until fsck.cbd (or a writer opened with force) replays the journal.
    public func requireWholeEntries() throws { try Self.requireWholeEntries(header, of: device) }

    /// Refuses a device that was not closed cleanly (DIRTY), unless `force`.
    public func requireClean(unless force: Bool = false) throws {
        try Self.requireClean(header, of: device, unless: force)
    }

    /// The two refusals for a header as a writer holds it now (a Volume's, after its writes).
    package static func requireWholeEntries(_ header: Header, of device: any BlockDevice) throws {
        guard header.intent == nil else {
            throw CBDError("\(device.path): an update of the allocation tables was interrupted", hint: .check)
        }
    }

    package static func requireClean(_ header: Header, of device: any BlockDevice, unless force: Bool) throws {
        guard !header.isDirty || force else {
            throw CBDError("\(device.path): not cleanly closed (DIRTY)", hint: .checkOrForce)
        }
    }

    /// Reads and validates pblk 0, and checks the device is as large as it claims.
    static func readHeader(_ device: any BlockDevice) throws -> (Header, Geometry) {
        let path = device.path
        guard device.size >= Units.pblkSize else {
            throw CBDError("\(path): too small to hold a CBD header (\(device.size) bytes)")
        }
        let b = try device.readPblks(0)
        if let undo = ResizeMarker.undoPath(in: b) {
            throw CBDError(
                "\(path): a resize was interrupted while it rewrote this device",
                hint: .undo(file: undo, device: path))
        }
        let h: Header
        let g: Geometry
        do { h = try Header.decode(b) } catch { throw CBDError("\(path): \(error)") }
        do { g = try Geometry(header: h) } catch { throw CBDError("\(path): \(error)") }
        guard g.physicalBytes <= device.size else {
            throw CBDError("\(path): header claims \(g.physicalBytes) bytes but the device has only \(device.size)")
        }
        return (h, g)
    }
}

// The header's writes: format-v1's DIRTY protocol has its home beside the read.
extension BlockDevice {
    package func writeHeader(_ h: Header) throws {
        try writePblks(h.encoded(), at: 0)
    }

    /// Sets or clears DIRTY in `header` and makes the header durable. Format-v1: a writer
    /// sets it before its first change to any other block, and clears it only after all its
    /// data, bitmaps and tables are synced.
    package func setDirty(_ dirty: Bool, in header: inout Header) throws {
        header.isDirty = dirty
        try writeHeader(header)
        try sync()
    }
}

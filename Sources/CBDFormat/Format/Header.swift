// SPDX-License-Identifier: Apache-2.0
/// The header in pblk 0: the only place the device describes itself.
///
/// Layout (little endian): magic[4] "CBD*", version_major u16, version_minor u16,
/// nr_physical_sectors u64, nr_logical_sectors u64, lblk_shift u16,
/// lblk_per_zone_shift u16, flags u16, algorithm u8, then zeros to 4096 bytes. Version 1.1
/// is 1.0 with an intent record (`Intent`) at offset 64, present only while DIRTY.
public struct Header: Equatable, Sendable {
    public static let magic: [UInt8] = [0x43, 0x42, 0x44, 0x2A]
    public static let versionMajor: UInt16 = 1
    /// The newest minor version known: 1 (a 1.0 header with a pending intent record).
    public static let versionMinor: UInt16 = 1
    /// flags bit 0: the device was not closed cleanly.
    public static let flagDirty: UInt16 = 1
    public static let knownFlags: UInt16 = flagDirty
    /// algorithm 0: LZ4 block format.
    public static let algorithmLZ4: UInt8 = 0
    /// The largest logical size this implementation handles: 2^63 - 1 bytes, in sectors.
    public static let maxLogicalSectors = UInt64(Int.max) / UInt64(Units.sectorSize)
    /// Bytes of the header that carry fields; the rest of the pblk is reserved (zero).
    public static let fieldBytes = 31

    public var versionMajor: UInt16 = Header.versionMajor
    public var versionMinor: UInt16 = 0
    public var nrPhysicalSectors: UInt64
    public var nrLogicalSectors: UInt64
    public var lblkShift: UInt16
    public var lblkPerZoneShift: UInt16
    public var flags: UInt16 = 0
    public var algorithm: UInt8 = Header.algorithmLZ4
    /// Table entries whose write was in progress (version 1.1); nil on a 1.0 header.
    public var intent: Intent? {
        didSet { versionMinor = intent == nil ? 0 : 1 }
    }

    public init(
        nrPhysicalSectors: UInt64, nrLogicalSectors: UInt64,
        lblkShift: UInt16, lblkPerZoneShift: UInt16, flags: UInt16 = 0
    ) {
        self.nrPhysicalSectors = nrPhysicalSectors
        self.nrLogicalSectors = nrLogicalSectors
        self.lblkShift = lblkShift
        self.lblkPerZoneShift = lblkPerZoneShift
        self.flags = flags
    }

    public var isDirty: Bool {
        get { flags & Header.flagDirty != 0 }
        set { flags = newValue ? flags | Header.flagDirty : flags & ~Header.flagDirty }
    }

    /// The header as one 4096-byte pblk.
    public func encoded() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: Units.pblkSize)
        b.replaceSubrange(0..<4, with: Header.magic)
        LE.put(UInt64(versionMajor), 2, &b, 4)
        LE.put(UInt64(versionMinor), 2, &b, 6)
        LE.put(nrPhysicalSectors, 8, &b, 8)
        LE.put(nrLogicalSectors, 8, &b, 16)
        LE.put(UInt64(lblkShift), 2, &b, 24)
        LE.put(UInt64(lblkPerZoneShift), 2, &b, 26)
        LE.put(UInt64(flags), 2, &b, 28)
        b[30] = algorithm
        intent?.encode(into: &b)
        return b
    }

    /// Reads the fields without judging them; `validate` says whether they make sense.
    public static func parse(_ b: [UInt8]) throws(HeaderError) -> Header {
        guard b.count >= fieldBytes else { throw .truncated(b.count) }
        guard Array(b[0..<4]) == magic else { throw .badMagic(Array(b[0..<4])) }
        return fields(b)
    }

    /// Decodes and validates a header pblk: every rule of format-v1 that the header alone decides.
    public static func decode(_ b: [UInt8]) throws(HeaderError) -> Header {
        var h = try parse(b)
        if h.versionMinor == 1 {
            h.intent = try Intent.decode(b)
            guard h.isDirty else { throw .badIntent("on a device not marked DIRTY") }
        }
        try h.validate()
        let used = h.intent?.byteRange ?? fieldBytes..<fieldBytes
        for i in fieldBytes..<Units.pblkSize where !used.contains(i) && b[i] != 0 {
            throw .reservedNotZero(offset: i)
        }
        return h
    }

    /// Checks each field against its range, one error per rule.
    public func validate() throws(HeaderError) {
        guard versionMajor == Header.versionMajor else { throw .unsupportedMajor(versionMajor) }
        guard versionMinor <= Header.versionMinor else { throw .unsupportedMinor(versionMinor) }
        guard flags & ~Header.knownFlags == 0 else { throw .unknownFlags(flags) }
        guard algorithm == Header.algorithmLZ4 else { throw .unknownAlgorithm(algorithm) }
        guard lblkShift <= Units.maxLblkShift else { throw .lblkShiftOutOfRange(lblkShift) }
        guard lblkPerZoneShift <= Units.maxLblkPerZoneShift else {
            throw .lblkPerZoneShiftOutOfRange(lblkPerZoneShift)
        }
        guard nrPhysicalSectors % UInt64(Units.sectorsPerPblk) == 0 else {
            throw .physicalSectorsNotPblkMultiple(nrPhysicalSectors)
        }
        guard nrPhysicalSectors / UInt64(Units.sectorsPerPblk) <= Units.maxPblks else {
            throw .tooManyPblks(nrPhysicalSectors / UInt64(Units.sectorsPerPblk))
        }
        guard nrLogicalSectors > 0 else { throw .logicalSizeZero }
        // Sizes in bytes must fit a signed 64-bit integer (8 EiB), as in every file API.
        guard nrLogicalSectors <= Header.maxLogicalSectors else { throw .logicalTooLarge(nrLogicalSectors) }
        let lblkSectors = UInt64(Units.sectorsPerPblk) << UInt64(lblkShift)
        guard nrLogicalSectors % lblkSectors == 0 else {
            throw .logicalSectorsNotLblkMultiple(nrLogicalSectors, lblkSectors: lblkSectors)
        }
    }
}

extension HeaderError {
    /// The magic is right but the header is of a version, or has flags or an algorithm, this
    /// tool does not know (a newer writer's device, not damage), or holds an intent record it
    /// cannot read (rewriting the header would lose an interrupted entry write): fsck.cbd
    /// refuses such a header rather than write another.
    public var mustNotBeRewritten: Bool {
        switch self {
        case .unsupportedMajor, .unsupportedMinor, .unknownFlags, .unknownAlgorithm, .badIntent: return true
        default: return false
        }
    }
}

/// Why a header pblk is not a usable version 1.0 header.
public enum HeaderError: Error, Equatable, CustomStringConvertible, Sendable {
    case truncated(Int)
    case badMagic([UInt8])
    case unsupportedMajor(UInt16)
    case unsupportedMinor(UInt16)
    case unknownFlags(UInt16)
    case unknownAlgorithm(UInt8)
    case lblkShiftOutOfRange(UInt16)
    case lblkPerZoneShiftOutOfRange(UInt16)
    case physicalSectorsNotPblkMultiple(UInt64)
    case tooManyPblks(UInt64)
    case logicalSizeZero
    case logicalTooLarge(UInt64)
    case logicalSectorsNotLblkMultiple(UInt64, lblkSectors: UInt64)
    case reservedNotZero(offset: Int)
    case badIntent(String)

    public var description: String {
        switch self {
        case .truncated(let n): return "header is truncated (\(n) bytes)"
        case .badMagic(let m):
            return "bad magic \(Header.hex(m[...])) (not a CBD device)"
        case .unsupportedMajor(let v): return "unsupported format version \(v).x (this tool reads 1.x)"
        case .unsupportedMinor(let v): return "unknown format minor version 1.\(v) (this tool knows 1.0 and 1.1)"
        case .unknownFlags(let f): return "unknown flag bits 0x\(String(f, radix: 16)) in the header"
        case .unknownAlgorithm(let a): return "unknown compression algorithm \(a) (0 is LZ4)"
        case .lblkShiftOutOfRange(let s): return "lblk_shift \(s) is out of range 0..\(Units.maxLblkShift)"
        case .lblkPerZoneShiftOutOfRange(let s):
            return "lblk_per_zone_shift \(s) is out of range 0..\(Units.maxLblkPerZoneShift)"
        case .physicalSectorsNotPblkMultiple(let n):
            return "nr_physical_sectors \(n) is not a multiple of 8"
        case .tooManyPblks(let n): return "physical size of \(n) pblks exceeds 2^48"
        case .logicalSizeZero: return "nr_logical_sectors is 0"
        case .logicalTooLarge(let n): return "nr_logical_sectors \(n) is beyond 8 EiB"
        case .logicalSectorsNotLblkMultiple(let n, let s):
            return "nr_logical_sectors \(n) is not a multiple of the logical block (\(s) sectors)"
        case .reservedNotZero(let o): return "reserved header byte at offset \(o) is not zero"
        case .badIntent(let why): return "corrupt intent record in the header: \(why)"
        }
    }
}

extension Header {
    /// The fields of a header pblk as they are, without any check (for showing damaged devices).
    public static func fields(_ b: [UInt8]) -> Header {
        var h = Header(
            nrPhysicalSectors: LE.get(b, 8, 8), nrLogicalSectors: LE.get(b, 16, 8),
            lblkShift: UInt16(LE.get(b, 24, 2)), lblkPerZoneShift: UInt16(LE.get(b, 26, 2)),
            flags: UInt16(LE.get(b, 28, 2)))
        h.versionMajor = UInt16(LE.get(b, 4, 2))
        h.versionMinor = UInt16(LE.get(b, 6, 2))
        h.algorithm = b[30]
        return h
    }
}

extension Header {
    /// Bytes as two-digit hex separated by spaces ("43 42 44 2a"), for showing a magic.
    public static func hex(_ bytes: ArraySlice<UInt8>) -> String {
        bytes.map { b in
            let s = String(b, radix: 16); return s.count == 1 ? "0" + s : s
        }.joined(separator: " ")
    }
}

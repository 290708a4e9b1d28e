// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice
import CBDVolume
/// Reads a device for display (cbddump, cbd info): the header and geometry, a zone, a
/// logical block, a physical block. A damaged device still shows what can be read: a header
/// that fails validation is shown field by field with the reason.
public struct Inspector {
    public let device: BlockDevice
    public let header: Header?
    public let geometry: Geometry?
    /// Why the header or geometry cannot be trusted, if so.
    public let problem: String?
    let raw: [UInt8]

    public init(device: BlockDevice) throws {
        self.device = device
        var problem: String?
        var header: Header?
        var geometry: Geometry?
        do {
            let opened = try OpenedDevice(device, allowing: .interruptedUpdate)
            (header, geometry) = (opened.header, opened.geometry)
        } catch {
            // A header that does not validate is shown field by field, with why; a device too
            // small to hold one has nothing to show.
            guard device.size >= Units.pblkSize else { throw error }
            problem = "\(error)"
        }
        raw = try device.readPblks(0)
        if header == nil { header = Header.fields(raw) }
        self.header = header
        self.geometry = geometry
        self.problem = problem
    }

    /// The geometry, or an error naming why there is none.
    func requireGeometry() throws -> Geometry {
        guard let g = geometry else { throw CBDError(problem ?? "\(device.path): no geometry") }
        return g
    }

    // MARK: Header

    public func headerReport() -> Report {
        var r = Report()
        r.add("magic", Header.hex(raw[0..<4]))
        if let h = header {
            r.add("version_major", Int(h.versionMajor))
            r.add("version_minor", Int(h.versionMinor))
            r.add("nr_physical_sectors", unsigned: h.nrPhysicalSectors)
            r.add("nr_logical_sectors", unsigned: h.nrLogicalSectors)
            r.add("lblk_shift", Int(h.lblkShift))
            r.add("lblk_per_zone_shift", Int(h.lblkPerZoneShift))
            r.add("flags", Int(h.flags))
            r.add("dirty", h.isDirty)
            r.add("algorithm", Int(h.algorithm))
            if let i = h.intent {
                var intent = Report()
                intent.add("records", i.records)
                intent.add("payload_bytes", i.payloadBytes)
                intent.add("journal_pblks", i.journal.map { Int(clamping: $0) })
                r.add("intent", intent)
            }
        }
        if let p = problem { r.add("error", p) }
        guard let g = geometry else { return r }
        r.add("nr_pblk", g.nrPblk)
        r.add("lblk_size", g.lblkSize)
        r.add("pblk_per_lblk", g.pblkPerLblk)
        r.add("nr_lblk", g.nrLblk)
        r.add("lblk_per_zone", g.lblkPerZone)
        r.add("len_bytes", g.lenBytes)
        r.add("pblk_bytes", g.pblkBytes)
        r.add("entry_len", g.entryLen)
        r.add("entry_variant", g.variantName)
        r.add("table_blocks", g.tableBlocks)
        r.add("zone_span", g.zoneSpan)
        r.add("nr_zones", g.nrZones)
        r.add("physical_bytes", g.physicalBytes)
        r.add("logical_bytes", g.logicalBytes)
        r.add("device_bytes", device.size)
        return r
    }

    // MARK: Zone

    public func zoneReport(_ z: Int) throws -> Report {
        let g = try requireGeometry()
        guard z >= 0 && z < g.nrZones else { throw CBDError("zone \(z) is out of range 0..\(g.nrZones - 1)") }
        let bitmap = Bitmap(bytes: try device.readPblks(g.bitmapPblk(z)))
        let count = g.dataPblkCount(z)
        var r = Report()
        r.add("zone", z)
        r.add("zone_start", g.zoneStart(z))
        r.add("bitmap_pblk", g.bitmapPblk(z))
        r.add("table_pblks", first: g.tablePblks(z).lowerBound, last: g.tablePblks(z).upperBound - 1)
        r.add("data_pblks", first: g.dataStart(z), last: g.dataEnd(z) - 1)
        r.add("data_pblk_count", count)
        let used = bitmap.countSet(below: count)
        r.add("used_pblks", used)
        r.add("free_pblks", count - used)
        r.add("padding_bits_set", (count..<Units.pblksPerBitmap).allSatisfy { bitmap.isSet($0) })
        let extents = bitmap.freeExtents(below: count).map { e in
            Report.Value.range(g.dataStart(z) + e.lowerBound, g.dataStart(z) + e.upperBound - 1)
        }
        r.fields.append(("free_extents", .list(extents)))
        let lblks = z << g.lblkPerZoneShift..<(z << g.lblkPerZoneShift) + g.lblkPerZone
        var entries: [Report] = []
        try forEachEntry(zone: z) { n, bytes in entries.append(entryReport(n, bytes, g)) }
        r.add("lblks", first: lblks.lowerBound, last: lblks.upperBound - 1)
        r.add("entries_in_use", entries)
        return r
    }

    /// Calls `body(lblk, entry bytes)` for every entry of zone `z` in use (not all zero).
    package func forEachEntry(zone z: Int, _ body: (Int, ArraySlice<UInt8>) throws -> Void) throws {
        let g = try requireGeometry()
        let scanner = TableScanner(device: device, geometry: g)
        try scanner.forEachEntry(zone: z, buffer: scanner.makeBuffer()) { n, p in
            try body(n, Array(UnsafeRawBufferPointer(start: p, count: g.entryLen))[...])
        }
    }

    func entryReport(_ n: Int, _ bytes: ArraySlice<UInt8>, _ g: Geometry) -> Report {
        var r = Report()
        r.add("lblk", n)
        let codec = EntryCodec(g)
        do {
            let e = try codec.decode(Array(bytes))
            r.add("class", e.className)
            if case .compressed(let len, _) = e { r.add("length", len) }
            r.add("pblks", e.pblks.map { Int($0) })
            do { try codec.checkPlacement(e) } catch {
                if case .outsideData(let bad) = error { r.add("error", "pblk \(bad) is not a data pblk") }
            }
        } catch {
            r.add("class", "malformed")
            r.add("error", "\(error)")
        }
        if n >= g.nrLblk { r.add("beyond_logical_size", true) }
        return r
    }

    // MARK: Logical block

    public func lblkReport(_ n: Int) throws -> Report {
        let g = try requireGeometry()
        guard n >= 0 && n < g.nrLblk else { throw CBDError("logical block \(n) is out of range 0..\(g.nrLblk - 1)") }
        let meta = MetadataCache(device: device, geometry: g)
        let bytes = try meta.entryBytes(n)
        var r = Report()
        r.add("lblk", n)
        r.add("byte_offset", n * g.lblkSize)
        r.add("zone", g.zone(ofLblk: n))
        r.add("entry_index", g.entryIndex(ofLblk: n))
        r.add("table_pblk", g.entryOffset(ofLblk: n) / Units.pblkSize)
        let e = entryReport(n, bytes[...], g)
        for (k, v) in e.fields where k != "lblk" { r.fields.append((k, v)) }
        if let e = try? EntryCodec(g).decode(bytes), !e.pblks.isEmpty {
            let stored = e.pblks.count * Units.pblkSize
            r.add("stored_bytes", stored)
            r.add(
                "compression_ratio",
                Ratios.compression(
                    allocatedBlocks: 1, lblkSize: g.lblkSize,
                    pblks: e.pblks.count))
        }
        return r
    }

    // MARK: Physical block

    public func pblkReport(_ p: Int, hex: Bool) throws -> Report {
        let g = try requireGeometry()
        guard p >= 0 && p < g.nrPblk else { throw CBDError("pblk \(p) is out of range 0..\(g.nrPblk - 1)") }
        var r = Report()
        r.add("pblk", p)
        switch g.place(ofPblk: p) {
        case .header:
            r.add("kind", "header")
        case .bitmap(let z):
            r.add("kind", "bitmap")
            r.add("zone", z)
        case .table(let z, let b):
            r.add("kind", "table")
            r.add("zone", z)
            r.add("table_block", b)
            let first = b * Units.pblkSize / g.entryLen
            let last = min(g.lblkPerZone, ((b + 1) * Units.pblkSize + g.entryLen - 1) / g.entryLen) - 1
            if first <= last {
                r.add("entry_lblks", first: (z << g.lblkPerZoneShift) + first, last: (z << g.lblkPerZoneShift) + last)
            } else {
                r.add("entry_lblks", "none (table padding)")
            }
        case .data(let z, let k):
            r.add("kind", "data")
            r.add("zone", z)
            r.add("index", k)
            r.add("marked", Bitmap(bytes: try device.readPblks(g.bitmapPblk(z))).isSet(k))
            r.add("owners", try owners(of: p, g))
        case .beyondEnd:
            r.add("kind", "beyond end")
        }
        if hex { r.fields.append(("hex", .bytes(try device.readPblks(p)))) }
        return r
    }

    /// Logical blocks whose entries name pblk `p`, scanning every table.
    func owners(of p: Int, _ g: Geometry) throws -> [Int] {
        var out: [Int] = []
        let codec = EntryCodec(g)
        for z in TableScanner(device: device, geometry: g).zonesWithMetadata() {
            try forEachEntry(zone: z) { n, bytes in
                let named = bytes.withUnsafeBytes { b in
                    (0..<codec.slots).contains {
                        Int(
                            codec.slot(
                                $0,
                                at: b.baseAddress!)) == p
                    }
                }
                if named { out.append(n) }
            }
        }
        return out
    }
}

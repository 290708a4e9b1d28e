// SPDX-License-Identifier: Apache-2.0
import Glibc
import CBDFormat
import CBDDevice
import CBDVolume

/// Grows and shrinks a CBD device, physical and logical, without losing a byte.
///
/// A resize that keeps the geometry (same entry width, same lblk_per_zone_shift) touches only
/// the end of the device: growing adds zones and extends the last one; shrinking first moves
/// every block out of the region being cut, copy-on-write (copy, mark, repoint, then the cut).
/// Any other resize changes the layout of every zone: a full re-layout from a packed copy of
/// the data. On a block device that is in place, allowed only with an undo file that saves
/// every pblk first; an image file is instead written anew beside itself and renamed over the
/// old one (as convert writes its output), so that a crash leaves the old file or the new.
public final class Resizer {
    public let device: BlockDevice
    /// What a resize that keeps the layout writes through: the device, or an undo recorder.
    private var writer: BlockDevice
    public private(set) var header: Header
    public let geometry: Geometry
    /// Told (blocks done, blocks) as a re-layout packs the data (by lblk) and as a shrink moves
    /// the blocks in the region cut.
    public var progress: ProgressHandler?
    let codec: EntryCodec

    public struct Plan: Sendable {
        public let old: Geometry
        public let new: Geometry
        /// False when every zone's layout changes (a re-layout: a new image file, or an undo
        /// file for a device written in place).
        public let keepsGeometry: Bool
        public let usedPblks: Int
    }

    /// Opens a device for resizing; a DIRTY device is refused unless `force`.
    public init(device: BlockDevice, force: Bool) throws {
        self.device = device
        writer = device
        let opened = try OpenedDevice(device, allowing: .interruptedUpdate)
        try opened.requireClean(unless: force)
        (header, geometry, codec) = (opened.header, opened.geometry, opened.codec)
    }

    // MARK: Planning

    /// Data pblks in use and the first allocated lblk at or past `limit`, from the entries.
    func usage(firstAllocatedFrom limit: Int) throws -> (used: Int, firstBeyond: Int?) {
        var used = 0
        var first: Int?
        try forEachEntry { n, e in
            used += e.pblks.count
            if n >= limit && e != .unallocated && first == nil { first = n }
        }
        return (used, first)
    }

    /// Calls `body` for every allocated entry, zone by zone; a malformed entry is an error.
    package func forEachEntry(_ body: (Int, AllocationEntry) throws -> Void) throws {
        let scanner = TableScanner(device: device, geometry: geometry)
        let buffer = scanner.makeBuffer()
        for z in scanner.zonesWithMetadata() {
            try scanner.forEachEntry(zone: z, buffer: buffer) { n, p in
                do { try body(n, try codec.decode(p)) } catch let e as EntryError {
                    throw CBDError("\(device.path): logical block \(n): \(e)", hint: .check)
                }
            }
        }
    }

    /// The smallest geometry that holds the data (for -P and -M).
    public func minimum(logicalBytes: Int? = nil) throws -> Plan {
        let logical = logicalBytes ?? geometry.logicalBytes
        let (used, _) = try usage(firstAllocatedFrom: geometry.nrLblk)
        let g = try LayoutPlanner.compact(dataPblks: max(used, 1), logicalBytes: logical, lblkShift: geometry.lblkShift)
        return try plan(physicalBytes: g.physicalBytes, logicalBytes: logical)
    }

    /// The geometry for the new sizes: the current one kept when possible.
    public func plan(physicalBytes: Int, logicalBytes: Int) throws -> Plan {
        let g = geometry
        guard logicalBytes > 0, logicalBytes % g.lblkSize == 0 else {
            throw CBDError("logical size \(logicalBytes) must be a positive multiple of the block size \(g.lblkSize)")
        }
        let nrLblk = logicalBytes / g.lblkSize
        let (used, firstBeyond) = try usage(firstAllocatedFrom: nrLblk)
        if let n = firstBeyond {
            throw CBDError(
                "\(device.path): logical offset \(n * g.lblkSize) is still in use; shrink what is inside "
                    + "first")
        }
        let maxPblk = min(physicalBytes / Units.pblkSize, Int(Units.maxPblks))
        var new: Geometry
        var keeps = false
        if let t = LayoutPlanner.trimmed(
            maxPblk: maxPblk, lblkShift: g.lblkShift, zoneShift: g.lblkPerZoneShift,
            nrLblk: nrLblk),
            t.pblkBytes == g.pblkBytes,
            let valid = try? Geometry(
                nrPblk: t.nrPblk, lblkShift: g.lblkShift, lblkPerZoneShift: g.lblkPerZoneShift,
                nrLblk: nrLblk)
        {
            new = valid
            keeps = true
        } else {
            new = try LayoutPlanner.plan(
                physicalBytes: physicalBytes, logicalBytes: logicalBytes,
                lblkShift: g.lblkShift)
        }
        guard new.totalDataPblks >= used else {
            let min = try LayoutPlanner.compact(dataPblks: used, logicalBytes: logicalBytes, lblkShift: g.lblkShift)
            throw SizeError.dataDoesNotFit(
                path: device.path, usedPblks: used, physicalBytes: physicalBytes,
                minimum: min.physicalBytes)
        }
        return Plan(old: g, new: new, keepsGeometry: keeps, usedPblks: used)
    }

    // MARK: Resizing

    /// Carries out `plan`. A re-layout needs `undoPath`; `scratch` holds its temporary copy of the data.
    public func resize(_ plan: Plan, undoPath: String?, scratch: String) throws {
        // A forced resize of a device left DIRTY completes an interrupted entry write first.
        _ = try EntryJournal(device: device, geometry: geometry).replay(header: &header)
        if plan.keepsGeometry {
            // Even a resize that keeps the layout moves blocks and rewrites bitmaps: with an
            // undo file every pblk it changes is saved first, as for a re-layout.
            guard let undo = undoPath else { return try resizeKeepingGeometry(plan.new) }
            let recorder = try UndoRecorder(wrapping: device, undoPath: undo, targetSize: plan.new.physicalBytes)
            writer = recorder
            defer { writer = device }
            do {
                try resizeKeepingGeometry(plan.new)
                try recorder.finish()
            } catch {
                recorder.discardIfEmpty()
                throw error
            }
        } else {
            if let undo = undoPath {
                try relayout(plan.new, undoPath: undo, scratch: scratch)
            } else if let file = imageFile {
                try relayout(plan.new, replacing: file, scratch: scratch)
            } else {
                throw CBDError(
                    "\(device.path): this resize changes the layout of every zone "
                        + "(\(plan.old.variantName), lblk_per_zone_shift \(plan.old.lblkPerZoneShift) -> "
                        + "\(plan.new.variantName), \(plan.new.lblkPerZoneShift)); "
                        + "it rewrites the whole device in place", hint: .undoFile)
            }
        }
    }

    /// The device as a regular file that a re-layout may replace, nil for a block device
    /// (or a device in memory), which can only be rewritten in place.
    var imageFile: FileDevice? {
        var st = stat()
        guard let file = device as? FileDevice, fstat(file.fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG
        else { return nil }
        return file
    }

    /// True when `plan` is carried out by writing a new image file (no undo file needed).
    public func rewritesFile(_ plan: Plan, undoPath: String?) -> Bool {
        !plan.keepsGeometry && undoPath == nil && imageFile != nil
    }

    private func resizeKeepingGeometry(_ new: Geometry) throws {
        let old = geometry
        // Grow the storage first: a block device that cannot grow fails here, before any change.
        if new.physicalBytes > writer.size { try writer.setSize(new.physicalBytes) }
        try writer.setDirty(true, in: &header)
        if new.nrPblk > old.nrPblk {
            // New zones: empty bitmap (padding set) and zero table. Those whose metadata is a
            // hole already (a grown image file) are passed, found with a seek each.
            for z in TableScanner(device: writer, geometry: new).zonesWithMetadata(from: old.nrZones) {
                try writer.zero(new.metadataBytes(zone: z))
            }
            let last = new.nrZones - 1
            if last >= old.nrZones && new.dataPblkCount(last) < Units.pblksPerBitmap {
                try writer.writePblks(Bitmap(dataPblks: new.dataPblkCount(last)).bytes, at: new.bitmapPblk(last))
            }
            // The old last zone grows: its former padding bits become free data pblks.
            try setPadding(zone: old.nrZones - 1, old: old, new: new)
        } else if new.nrPblk < old.nrPblk {
            try moveBlocks(below: new.nrPblk, old: old, new: new)
            try setPadding(zone: new.nrZones - 1, old: old, new: new)
        }
        try writer.sync()
        header = Formatter.header(for: new)
        try writer.setDirty(false, in: &header)
        if new.physicalBytes < writer.size { try writer.setSize(new.physicalBytes) }
    }

    /// Rewrites zone `z`'s bitmap for its size under `new`: bits past its data pblks set, below clear
    /// where they were padding before.
    private func setPadding(zone z: Int, old: Geometry, new: Geometry) throws {
        var b = Bitmap(bytes: try writer.readPblks(old.bitmapPblk(z)))
        let before = z < old.nrZones ? old.dataPblkCount(z) : 0
        let after = new.dataPblkCount(z)
        for k in before..<max(before, after) { b.clear(k) }
        for k in after..<Units.pblksPerBitmap { b.set(k) }
        try writer.writePblks(b.bytes, at: new.bitmapPblk(z))
    }

    /// Moves every pblk at or past `limit` to a free pblk below it, copy-on-write: copies and
    /// new bits (sync), then entries (sync). A block's pblks below the limit stay where they
    /// are (they are not overwritten), so the move needs no more room than the data itself;
    /// the old bits vanish with the cut.
    private func moveBlocks(below limit: Int, old: Geometry, new: Geometry) throws {
        var moving: [(Int, AllocationEntry)] = []
        try forEachEntry { n, e in if e.pblks.contains(where: { Int($0) >= limit }) { moving.append((n, e)) } }
        guard !moving.isEmpty else { return }
        let meta = MetadataCache(device: writer, geometry: old)
        let allocator = PblkAllocator(meta: meta, layout: new)
        let buffer = ByteBuffer(count: Units.pblkSize)
        var moved: [(Int, AllocationEntry)] = []
        for (i, (n, e)) in moving.enumerated() {
            progress?(i + 1, moving.count)
            var fresh: [Pblk] = []
            for p in e.pblks {
                guard Int(p) >= limit else { fresh.append(p); continue }
                guard let q = try allocator.allocate(1, near: old.zone(ofLblk: n))?.first else {
                    throw CBDError("\(device.path): no free pblk left below the new end")
                }
                try writer.read(into: buffer.raw, at: Int(p) * Units.pblkSize)
                try writer.write(UnsafeRawBufferPointer(buffer.raw), at: Int(q) * Units.pblkSize)
                fresh.append(q)
            }
            moved.append((n, e.withPblks(fresh)))
        }
        try meta.writeDirtyBitmaps()
        try writer.sync()
        try EntryJournal(device: writer, geometry: old).write(
            moved.map { ($0.0, codec.encode($0.1)) }, meta: meta, header: &header,
            reserve: { try allocator.allocate($0, near: 0) }, release: { try allocator.free($0) })
        try meta.writeDirtyBitmaps()  // the journal's pblks are free again
        try writer.sync()
    }

    /// Lays the device out anew in place, through an undo recorder.
    private func relayout(_ new: Geometry, undoPath: String, scratch: String) throws {
        let (data, lengths) = try packedCopy(for: new, scratch: scratch)
        let recorder = try UndoRecorder(wrapping: device, undoPath: undoPath, targetSize: new.physicalBytes)
        do {
            if new.physicalBytes > device.size { try recorder.setSize(new.physicalBytes) }
            try Assembler(geometry: new, data: data, lengths: lengths)
                .write(
                    into: recorder, fresh: false,
                    placeholder: ResizeMarker.encode(undoPath: Undo.absolutePath(undoPath)))
            header = Formatter.header(for: new)
            if new.physicalBytes < device.size { try recorder.setSize(new.physicalBytes) }
            try recorder.finish()
        } catch {
            recorder.discardIfEmpty()
            throw error
        }
    }

    /// Lays the image file out anew in a new file beside it (same mode), synced, then renamed
    /// over it: the old file is whole until the rename, the new one whole after.
    private func relayout(_ new: Geometry, replacing file: FileDevice, scratch: String) throws {
        let (data, lengths) = try packedCopy(for: new, scratch: scratch)
        let output = OutputFile(replacing: file)
        do {
            let out = try output.open(size: new.physicalBytes)
            try Assembler(geometry: new, data: data, lengths: lengths).write(into: out, fresh: true)
            try output.commit()
            header = Formatter.header(for: new)
        } catch {
            output.abandon()
            throw error
        }
    }

    /// Every block's stored bytes packed into a spill, with the log of their lengths (what
    /// the Assembler lays out), for the lblks below `new.nrLblk`.
    private func packedCopy(for new: Geometry, scratch: String) throws -> (data: Spill, lengths: Spill) {
        let data = try Spill(directory: scratch), lengths = try Spill(directory: scratch)
        // The lengths log is written a chunk of lblks at a time (allocated entries come in lblk
        // order), so memory does not grow with the logical size; chunks without one stay holes.
        let chunk = 1 << 16
        var lens = [UInt32](repeating: 0, count: chunk)
        var current = -1  // the chunk `lens` holds; -1 before the first entry
        func flush() throws {
            guard current >= 0 else { return }
            try lens.withUnsafeBytes { try lengths.write($0.baseAddress!, $0.count, at: current * chunk * 4) }
            for i in lens.indices { lens[i] = 0 }
        }
        let buffer = ByteBuffer(count: geometry.lblkSize)
        try forEachEntry { n, e in
            guard n < new.nrLblk else { return }
            progress?(n + 1, geometry.nrLblk)
            try device.readPblkRuns(e.pblks, into: buffer.base)
            try data.append(buffer.base, e.pblks.count * Units.pblkSize)
            if n / chunk != current { try flush(); current = n / chunk }
            switch e {
            case .compressed(let len, _): lens[n % chunk] = PackedBlock.compressed(length: len).logWord
            case .raw: lens[n % chunk] = PackedBlock.raw.logWord
            case .unallocated: break
            }
        }
        try flush()
        try lengths.extend(to: new.nrLblk * 4)
        return (data, lengths)
    }
}

// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice
import CBDVolume
/// The facts `cbd info` shows: sizes, space, compression, state and contents.
public enum DeviceInfo {
    /// Whether a read-only check finds the device consistent (fsck.cbd's answer to `-n`;
    /// given by the tool, so that this layer does not hold the checker).
    public typealias Check = (OpenedDevice) throws -> Bool

    /// The report of `dev`: counted from its bitmaps and tables (`DeviceUsage`), with the
    /// verdict of `check` when one is given (`cbd info --check`).
    public static func report(_ dev: BlockDevice, check: Check? = nil) throws -> Report {
        let opened = try OpenedDevice(dev, allowing: .interruptedUpdate)
        let (h, g) = (opened.header, opened.geometry)
        // A damaged device still has every figure that can be read: what could not is named.
        var unreadable: [String] = []
        var s = DeviceUsage()
        do { s = try DeviceUsage.count(opened) } catch { unreadable.append("allocation tables (\(error))") }
        var consistent: Bool?
        if let check {
            do { consistent = try check(opened) } catch {
                consistent = false
                unreadable.append("check (\(error))")
            }
        }
        let found: [(String, String)]?
        do { found = try Signatures.content(of: try Volume(opened)) } catch {
            found = nil
            unreadable.append("contents (\(error))")
        }
        let markedPblks = s.markedPblks
        var r = Report()
        r.add("device", dev.path)
        r.add("format", "cbd \(h.versionMajor).\(h.versionMinor)")
        r.add("physical_size", size: g.physicalBytes)
        r.add("logical_size", size: g.logicalBytes)
        r.add("device_size", size: dev.size)
        r.add("block_size", size: g.lblkSize)
        r.add("entry_variant", g.variantName)
        r.add("zones", g.nrZones)
        r.add("data_size", size: g.totalDataPblks * Units.pblkSize)
        r.add("used", size: markedPblks * Units.pblkSize)
        r.add("free", size: (g.totalDataPblks - markedPblks) * Units.pblkSize)
        let kept = opened.journal.pblksPerRecord
        addUse(&r, dataPblks: g.totalDataPblks, available: max(0, g.totalDataPblks - markedPblks - kept))
        r.add("blocks", g.nrLblk)
        r.add("compressed_blocks", s.compressedBlocks)
        r.add("raw_blocks", s.rawBlocks)
        r.add("unallocated_blocks", g.nrLblk - s.compressedBlocks - s.rawBlocks)
        if s.damagedEntries > 0 { r.add("damaged_entries", s.damagedEntries) }
        r.add("compression_ratio", s.compressionRatio(lblkSize: g.lblkSize))
        r.add("provisioning_ratio", g.provisioningRatio)
        let limit = LayoutPlanner.inPlaceLimit(of: g)
        r.add("grows_in_place_to", size: limit.physicalBytes)
        r.add("logical_grows_to", size: limit.logicalBytes)
        r.add("state", h.isDirty ? "DIRTY" : "clean")
        if h.isDirty, let note = FailureNote.read(for: dev.path) { r.add("stopped_by", note) }
        if let consistent { r.add("consistent", consistent && unreadable.isEmpty) }
        // What is known to need fsck without a check: a DIRTY mark, entries that do not
        // decode, tables that cannot be read; and whatever a check found.
        if h.isDirty || s.damagedEntries > 0 || !unreadable.isEmpty || consistent == false {
            r.add("repair", "fsck.cbd -f \(dev.path)")
        }
        if !unreadable.isEmpty {
            r.add("contents", "unreadable")
        } else if let found {
            r.add(
                "contents",
                found.map { $0.0 == "TYPE" || $0.0 == "PTTYPE" ? $0.1 : "\($0.0)=\($0.1)" }.joined(separator: ", "))
            var c = Report()
            for (k, v) in found { c.add(k.lowercased(), v) }
            r.add("contents_fields", c)
        } else {
            r.add("contents", "unknown")
        }
        if !unreadable.isEmpty { r.add("unreadable", unreadable.joined(separator: "; ")) }
        return r
    }

    /// `use` (percent of the data pblks not available to a write) and `full` (no block can
    /// be written: not one pblk is available).
    static func addUse(_ r: inout Report, dataPblks: Int, available: Int) {
        r.add("use_percent", dataPblks > 0 ? Double(dataPblks - available) * 100 / Double(dataPblks) : 100)
        r.add("full", available == 0)
    }

    /// What a running server publishes about the device it holds (`ServeStatus`): live use,
    /// including the writes waiting in its cache. The device itself is not opened.
    public static func liveReport(_ path: String, _ s: ServeStatus) -> Report {
        var r = Report()
        r.add("device", path)
        r.add("physical_size", size: s.physicalBytes)
        r.add("logical_size", size: s.logicalBytes)
        r.add("block_size", size: s.lblkSize)
        r.add("data_size", size: s.dataPblks * Units.pblkSize)
        r.add("used", size: (s.dataPblks - s.freePblks) * Units.pblkSize)
        r.add("pending", size: s.promisedPblks * Units.pblkSize)
        r.add("free", size: s.availablePblks * Units.pblkSize)
        addUse(&r, dataPblks: s.dataPblks, available: s.availablePblks)
        r.add("refused_writes", s.refusals)
        r.add(
            "state",
            "served\(s.readOnly ? " read-only" : s.failed ? ", read-only after an I/O error" : "") "
                + "by process \(s.pid) (live)")
        r.add("server_pid", Int(s.pid))
        if let u = s.uri { r.add("uri", u) }
        return r
    }
}

/// The facts `cbd info` shows: sizes, space, compression, state and contents.
public enum DeviceInfo {
    public static func report(_ dev: BlockDevice) throws -> Report {
        let (h, g) = try dev.readHeader()
        var options = Checker.Options()
        options.mode = .readOnly
        let check = try Checker(device: dev, options: options)
        try check.run()
        var markedPblks = 0
        for z in 0..<g.nrZones {
            markedPblks += Bitmap(bytes: try dev.readPblks(g.bitmapPblk(z))).countSet(below: g.dataPblkCount(z))
        }
        let s = check.stats
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
        r.add("blocks", g.nrLblk)
        r.add("compressed_blocks", s.compressed)
        r.add("raw_blocks", s.raw)
        r.add("unallocated_blocks", g.nrLblk - s.compressed - s.raw)
        r.add("compression_ratio", s.compressionRatio(lblkSize: g.lblkSize))
        r.add("provisioning_ratio", g.provisioningRatio)
        r.add("state", h.isDirty ? "DIRTY" : "clean")
        r.add("consistent", check.problems.isEmpty)
        let volume = try Volume(device: dev)
        if let found = try Signatures.content(of: volume) {
            r.add("contents",
                found.map { $0.0 == "TYPE" || $0.0 == "PTTYPE" ? $0.1 : "\($0.0)=\($0.1)" }.joined(separator: ", "))
            var c = Report()
            for (k, v) in found { c.add(k.lowercased(), v) }
            r.add("contents_fields", c)
        } else {
            r.add("contents", "unknown")
        }
        return r
    }
}

// SPDX-License-Identifier: Apache-2.0
import CBDDevice
import CBDFormat
import CBDVolume
import CBlkid

extension Signatures {
    /// What the logical device holds, as libblkid sees it through the read path, e.g.
    /// `ext4, UUID=..., LABEL=...`; nil when it recognizes nothing.
    ///
    /// The first 8 MiB and the last 1 MiB of the logical device (where superblocks and
    /// partition tables live) are copied into an unlinked sparse file of the logical size,
    /// which libblkid probes like a disk. Where the scratch filesystem cannot hold a sparse
    /// file that large (ext4 stops at 16 TiB), the head alone is probed: a filesystem or a
    /// partition table still shows there, only backup copies at the end are missed.
    public static func content(of volume: Volume, scratchDirectory: String = "/tmp") throws -> [(String, String)]? {
        let spill = try Spill(directory: scratchDirectory)
        var size = volume.logicalSize
        do { try spill.extend(to: size) } catch {
            size = min(size, 8 << 20)
            try spill.extend(to: size)
        }
        let head = min(size, 8 << 20), tailStart = max(head, size - (1 << 20))
        let buf = ByteBuffer(count: 1 << 20)
        for range in [0..<head, tailStart..<size] {
            var off = range.lowerBound
            while off < range.upperBound {
                let n = min(buf.count, range.upperBound - off)
                try volume.read(into: buf[0..<n], at: off)
                try spill.write(buf.base, n, at: off)
                off += n
            }
        }
        guard let pr = blkid_new_probe() else { return nil }
        defer { blkid_free_probe(pr) }
        guard blkid_probe_set_device(pr, spill.fd, 0, 0) == 0 else { return nil }
        blkid_probe_enable_superblocks(pr, 1)
        blkid_probe_set_superblocks_flags(
            pr,
            Int32(BLKID_SUBLKS_LABEL | BLKID_SUBLKS_UUID | BLKID_SUBLKS_TYPE | BLKID_SUBLKS_VERSION))
        blkid_probe_enable_partitions(pr, 1)
        guard blkid_do_safeprobe(pr) == 0 else { return nil }
        var out: [(String, String)] = []
        for name in ["TYPE", "PTTYPE", "VERSION", "UUID", "PTUUID", "LABEL"] {
            if let v = value(pr, name) { out.append((name, v)) }
        }
        return out.isEmpty ? nil : out
    }
}

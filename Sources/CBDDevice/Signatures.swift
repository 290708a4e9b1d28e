// SPDX-License-Identifier: Apache-2.0
import Glibc
import CBlkid
import CBDFormat

/// Filesystem, RAID and partition-table signatures on a target, found by libblkid
/// (as mke2fs and wipefs do), so that mkfs never silently overwrites someone's data.
public enum Signatures {
    /// One signature: what it is and where its magic lies.
    public struct Found: Equatable, Sendable, CustomStringConvertible {
        public var type: String
        public var usage: String
        public var offset: Int
        /// e.g. "ext4 filesystem at byte 1080".
        public var description: String {
            if type == "cbd" { return "a CBD device" }
            let name = type == "dos" || type == "gpt" ? type.uppercased() : type
            let article = "aeiou".contains(name.lowercased().first ?? "x") ? "an" : "a"
            return "\(article) \(name) \(usage) (magic at byte \(offset))"
        }
    }

    /// Every signature libblkid recognizes on the open file descriptor, plus a CBD header.
    public static func probe(fd: Int32) -> [Found] {
        var out: [Found] = []
        if let cbd = cbdHeader(fd: fd) { out.append(cbd) }
        walk(fd: fd, wipe: false) { out.append($0) }
        return out
    }

    /// Erases every signature libblkid finds (wipefs -a) on a device backed by a file, and
    /// a CBD magic on any device.
    public static func wipe(device: any BlockDevice) throws {
        var failed = false
        if let fd = device.openFile { walk(fd: fd, wipe: true) { _ in } }
        var m = [UInt8](repeating: 0, count: 4)
        if device.size >= 4 { try m.withUnsafeMutableBytes { try device.read(into: $0, at: 0) } }
        if m == Header.magic {
            let zeros = [UInt8](repeating: 0, count: 4)
            try zeros.withUnsafeBytes { try device.write($0, at: 0) }
        }
        if let fd = device.openFile { walk(fd: fd, wipe: false) { _ in failed = true } }
        if failed { throw CBDError("\(device.path): could not wipe the existing signatures") }
    }

    private static func cbdHeader(fd: Int32) -> Found? {
        var m = [UInt8](repeating: 0, count: 4)
        guard pread(fd, &m, 4, 0) == 4, m == Header.magic else { return nil }
        return Found(type: "cbd", usage: "compressed block device", offset: 0)
    }

    /// Runs libblkid's superblock and partition probes over the whole device.
    private static func walk(fd: Int32, wipe: Bool, _ each: (Found) -> Void) {
        guard let pr = blkid_new_probe() else { return }
        defer { blkid_free_probe(pr) }
        guard blkid_probe_set_device(pr, fd, 0, 0) == 0 else { return }
        blkid_probe_enable_superblocks(pr, 1)
        blkid_probe_set_superblocks_flags(
            pr,
            Int32(BLKID_SUBLKS_TYPE | BLKID_SUBLKS_USAGE | BLKID_SUBLKS_MAGIC | BLKID_SUBLKS_BADCSUM))
        blkid_probe_enable_partitions(pr, 1)
        blkid_probe_set_partitions_flags(pr, Int32(BLKID_PARTS_MAGIC))
        var guardCount = 0
        while blkid_do_probe(pr) == 0 && guardCount < 64 {
            guardCount += 1
            let type = value(pr, "TYPE")
            let ptType = value(pr, "PTTYPE")
            let usage = value(pr, "USAGE") ?? "filesystem"
            let offset = Int(value(pr, "SBMAGIC_OFFSET") ?? value(pr, "PTMAGIC_OFFSET") ?? "0") ?? 0
            if let t = type {
                each(Found(type: t, usage: usage == "filesystem" ? "filesystem" : usage, offset: offset))
            } else if let p = ptType {
                each(Found(type: p, usage: "partition table", offset: offset))
            }
            if wipe { _ = blkid_do_wipe(pr, 0) }
        }
    }

    package static func value(_ pr: blkid_probe, _ name: String) -> String? {
        var data: UnsafePointer<CChar>?
        var len = 0
        guard blkid_probe_lookup_value(pr, name, &data, &len) == 0, let d = data else { return nil }
        return String(cString: d)
    }
}

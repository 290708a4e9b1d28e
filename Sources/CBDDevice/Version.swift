// SPDX-License-Identifier: Apache-2.0
import CBlkid
import CLZ4
import CSysShim

/// Versions of cbd-tools (the VERSION file) and of the system libraries it runs with,
/// for `--version` lines and bug reports.
public enum Version {
    public static var cbdTools: String { String(cString: cbd_version()) }
    public static var lz4: String { String(cString: LZ4_versionString()) }
    public static var blkid: String {
        var text: UnsafePointer<CChar>?
        _ = blkid_get_library_version(&text, nil)
        return text.map { String(cString: $0) } ?? "unknown"
    }
}

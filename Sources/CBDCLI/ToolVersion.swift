// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice

/// The `--version` line of every tool, e.g. `fsck.cbd 0.2.0 (liblz4 1.9.4, libblkid 2.38.1)`.
public enum ToolVersion {
    public static func line(_ tool: String) -> String {
        "\(tool) \(Version.cbdTools) (liblz4 \(Version.lz4), libblkid \(Version.blkid))"
    }
}

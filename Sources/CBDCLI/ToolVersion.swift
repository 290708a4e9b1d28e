// SPDX-License-Identifier: Apache-2.0
import CBDDevice

/// The `--version` line of every tool, e.g. `fsck.cbd 0.2.0 (liblz4 1.9.4, libblkid 2.38.1)`.
public enum ToolVersion {
    public static func line(_ tool: String) -> String {
        "\(tool) \(Version.cbdTools) (liblz4 \(Version.lz4), libblkid \(Version.blkid))"
    }

    /// The command line's arguments with `-V` spelled `--version` (as e2fsprogs' tools take
    /// it), up to a `--`: swift-argument-parser knows only the long flag.
    public static func arguments(_ given: [String] = Array(CommandLine.arguments.dropFirst())) -> [String] {
        var out: [String] = []
        var options = true
        for a in given {
            if a == "--" { options = false }
            out.append(options && a == "-V" ? "--version" : a)
        }
        return out
    }
}

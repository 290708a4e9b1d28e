// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice

/// The options the tools share, parsed one way everywhere.
public enum Options {
    /// What a user should know about a block size: 4 KiB blocks never compress.
    public static func blockSizeNote(lblkShift: Int) -> String? {
        lblkShift == 0
            ? "Note: with 4 KiB blocks nothing is compressed (a block never fits in less than one "
                + "4 KiB pblk); only all-zero blocks take no space. Use -b 16K or more to compress." : nil
    }

    /// The refusal of a target that holds other data, unless the user asked to overwrite.
    public static func signatureRefusal(_ path: String, _ found: [Signatures.Found]) -> CBDError {
        CBDError("\(path) contains \(found.map(\.description).joined(separator: ", "))", hint: .overwrite)
    }
}

/// "1 zone", "2 zones": a count with its noun, singular where it is one.
public func plural(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }

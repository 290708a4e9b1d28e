// SPDX-License-Identifier: Apache-2.0
import CBDFormat
/// What a conversion did, for the tools' summary lines.
public struct ConvertSummary: Sendable {
    public var inputBytes = 0
    public var logicalBytes = 0
    public var physicalBytes = 0
    public var blocks = 0
    public var compressedBlocks = 0
    public var rawBlocks = 0
    public var unallocatedBlocks = 0
    public var dataPblks = 0
    /// To CBD: the packed data was written twice (through a spill, or to a guessed layout
    /// that the data's real size did not keep) rather than straight to its place.
    public var dataCopied = false
    /// Salvage: blocks that could not be read and were written as zeros, and the first of them.
    public var lostBlocks = 0
    public var lost: [Lost] = []
    public struct Lost: Sendable, Equatable {
        public var lblk: Int
        public var reason: String
    }
    /// How many lost blocks a summary names.
    public static let lostNamed = 8

    public init() {}

    /// The compression ratio of the blocks stored (the same number fsck.cbd and cbd info print).
    public var compressionRatio: Double {
        guard blocks > 0 else { return 0 }
        return Ratios.compression(
            allocatedBlocks: compressedBlocks + rawBlocks, lblkSize: logicalBytes / blocks,
            pblks: dataPblks)
    }
}

/// Progress reports: (bytes done, bytes total).

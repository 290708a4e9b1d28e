// SPDX-License-Identifier: Apache-2.0
import Glibc

/// How many blocks a converter keeps in flight: the memory its buffers may take. Blocks are
/// 4 KiB to 1 GiB, so a window sized in blocks (one per core, two windows) that costs 64 MiB
/// with 64 KiB blocks would cost 8 GiB with 1 GiB blocks; the window is cut to the budget,
/// down to one block, single-buffered, as the floor (a block cannot be cut).
public struct MemoryBudget: Sendable {
    public let bytes: Int

    public init(bytes: Int) { self.bytes = max(0, bytes) }

    /// The default: a quarter of the machine's memory, at most 1 GiB (with 1 GiB blocks a
    /// conversion then holds two blocks, its floor).
    public static var standard: MemoryBudget {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        let ram = pages.multipliedReportingOverflow(by: size)
        let quarter = pages > 0 && size > 0 && !ram.overflow ? ram.partialValue / 4 : Int.max
        return MemoryBudget(bytes: min(quarter, 1 << 30))
    }

    /// Blocks per window and windows in flight (2: one filled while the other is written; 1
    /// when two do not fit) for `preferred` blocks of `blockBytes`, each needing
    /// `buffersPerBlock` buffers of its size, plus `fixed` bytes.
    public func windows(preferred: Int, blockBytes: Int, buffersPerBlock: Int, fixed: Int = 0)
        -> (blocks: Int, count: Int)
    {
        let perBlock = blockBytes.multipliedReportingOverflow(by: buffersPerBlock)
        guard !perBlock.overflow, perBlock.partialValue > 0 else { return (1, 1) }
        let room = max(0, bytes - fixed) / perBlock.partialValue  // blocks that fit, all windows
        if room >= 2 { return (max(1, min(preferred, room / 2)), 2) }
        return (1, 1)
    }
}

// SPDX-License-Identifier: Apache-2.0
/// The two ratios the tools print, defined once (see cbd(5), "Ratios").
public enum Ratios {
    /// Compression ratio: the logical bytes of the allocated blocks over the bytes of the pblks
    /// that hold them. Unallocated (all-zero) blocks count in neither. 0 when nothing is stored.
    public static func compression(allocatedBlocks: Int, lblkSize: Int, pblks: Int) -> Double {
        pblks == 0 ? 0 : Double(allocatedBlocks) * Double(lblkSize) / Double(pblks * Units.pblkSize)
    }
}

extension Geometry {
    /// Provisioning ratio: the logical size over the physical size (what mkfs.cbd -r sets).
    public var provisioningRatio: Double { Double(logicalBytes) / Double(physicalBytes) }
}

// SPDX-License-Identifier: Apache-2.0
/// The fixed units of the format: sectors and physical blocks never change size.
public enum Units {
    /// A sector, the unit of the header's size fields.
    public static let sectorSize = 512
    /// A physical block (pblk), the unit of allocation.
    public static let pblkSize = 4096
    /// Sectors per pblk.
    public static let sectorsPerPblk = 8
    /// The largest pblk count the format can address (48-bit slots).
    public static let maxPblks: UInt64 = 1 << 48
    /// Bits in one zone bitmap, hence the data pblks a zone can hold.
    public static let pblksPerBitmap = 4096 * 8
    /// Largest lblk_shift (1 GiB logical blocks).
    public static let maxLblkShift = 18
    /// Largest lblk_per_zone_shift.
    public static let maxLblkPerZoneShift = 24
}

/// A physical block number, absolute from the start of the device (pblk 0 is the header).
public typealias Pblk = UInt64

// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice

/// A CBD's logical device as a read-only `BlockDevice`: what a converter or a comparison
/// reads from a CBD as it would from a raw image (`cbd convert a.cbd b.cbd --to cbd` is
/// raw->cbd over this). Unallocated blocks are its holes (`nextData`, `nextHole`), so a
/// reader that skips holes reads only what is allocated.
///
/// Reads go through `Volume.readShared`, so many threads may read at once. Holes are answered
/// by a second Volume on the same device, whose cache no reader shares (`allocationRun` is
/// not for concurrent use).
public final class LogicalDevice: BlockDevice, @unchecked Sendable {
    public let path: String
    public let size: Int
    public let isWritable = false
    public let geometry: Geometry
    private let reader: Volume
    private let holes: Volume
    private let lock = Lock()

    /// The logical device of the CBD on `device` (opened for reading).
    public init(device: BlockDevice) throws {
        reader = try Volume(device: device)
        holes = try Volume(device: device, cacheBytes: 0)
        geometry = reader.geometry
        path = device.path
        size = reader.logicalSize
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        try reader.readShared(into: buffer, at: offset)
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: Int) throws {
        throw CBDError("\(path): read-only here", kind: .readOnly)
    }

    public func zero(_ range: Range<Int>) throws {
        throw CBDError("\(path): read-only here", kind: .readOnly)
    }

    public func sync() throws {}

    /// The start of the first allocated block at or after `offset` (the offset itself inside one).
    public func nextData(from offset: Int) -> Int? {
        guard offset < size else { return nil }
        let n = offset / geometry.lblkSize
        guard let run = try? lock.withLock({ try holes.allocationRun(from: n, below: geometry.nrLblk) }) else {
            return offset  // cannot tell: data
        }
        if run.allocated { return offset }
        return run.end < geometry.nrLblk ? run.end * geometry.lblkSize : nil
    }

    /// The end of the run of allocated blocks that holds `offset`.
    public func nextHole(from offset: Int) -> Int {
        guard offset < size else { return size }
        let n = offset / geometry.lblkSize
        guard let run = try? lock.withLock({ try holes.allocationRun(from: n, below: geometry.nrLblk) }),
            run.allocated
        else { return size }  // cannot tell: data to the end
        return min(size, run.end * geometry.lblkSize)
    }

    public func isHole(_ range: Range<Int>) -> Bool {
        guard let next = nextData(from: range.lowerBound) else { return true }
        return next >= range.upperBound
    }
}

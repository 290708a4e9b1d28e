// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice

/// An output target in memory, for tests of the converters: a fresh `MemoryDevice` per
/// `open`, or an existing one (as a block device is), whose old contents stay.
public final class MemoryTarget: OutputTarget {
    public let name = "memory output"
    public let scratchDirectory: String
    public var isFresh: Bool { existing == nil }
    private let existing: MemoryDevice?
    /// The device last opened, and whether it was committed.
    public private(set) var device: MemoryDevice?
    public private(set) var committed = false
    /// How many times it was opened (a fresh output is opened again when its layout changes).
    public private(set) var opens = 0

    /// A fresh output, or `existing` (which must be large enough); spills go to `scratch`.
    public init(existing: MemoryDevice? = nil, scratch: String) {
        self.existing = existing
        scratchDirectory = scratch
    }

    public func open(size: Int) throws -> any BlockDevice {
        opens += 1
        committed = false
        let d = existing ?? MemoryDevice(size: size, name: name)
        guard d.size >= size else { throw SizeError.deviceTooSmall(path: d.path, has: d.size, needs: size) }
        device = d
        return d
    }

    public func abandon() { device = nil }

    public func commit() throws {
        try device?.sync()
        committed = device != nil
    }

    public func isSame(as other: any BlockDevice) -> Bool { device.map { $0 === other } ?? (existing === other) }
}

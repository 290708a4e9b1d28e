// SPDX-License-Identifier: Apache-2.0
import CBDFormat

/// Where a conversion writes its output, as an io_manager's open is under e2fsprogs' tools:
/// the converter opens it at the size it needs, writes the device it gets, and commits it
/// (durable, and under its name) or abandons it. `OutputFile` is a path (a new image file or
/// an existing block device), `StreamOutput` standard output, and tests use memory.
public protocol OutputTarget: AnyObject {
    /// How messages name the output.
    var name: String { get }
    /// Whether an opened output reads as zeros and may be written before the input has been
    /// read to its end (a new file under a temporary name). False for an existing device,
    /// whose old contents stay until overwritten: holes must be written as zeros, and a
    /// conversion that may still fail writes nothing there before it knows it will succeed.
    var isFresh: Bool { get }
    /// A folder for the converter's spill files: beside a new file (same filesystem), or
    /// elsewhere for a device.
    var scratchDirectory: String { get }
    /// Opens the output, `size` bytes. After `abandon`, opening again starts over.
    func open(size: Int) throws -> any BlockDevice
    /// Gives up what was opened: a new file loses its temporary name (what was written stays
    /// readable through the device while it is held).
    func abandon()
    /// Makes the output durable and gives it its name.
    func commit() throws
    /// Whether `device` is the output itself: converting a device onto itself destroys it.
    func isSame(as device: any BlockDevice) -> Bool
}

extension OutputTarget {
    /// Refuses an output that is the input itself.
    package func refuse(input: any BlockDevice) throws {
        guard !isSame(as: input) else { throw CBDError("\(name): is the input itself; convert to another file") }
    }
}

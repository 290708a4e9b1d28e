// SPDX-License-Identifier: Apache-2.0
import Glibc
import CBDFormat

/// A device that can only be written in order, from the start: standard output (a pipe or a
/// terminal). Holes are written as zeros; a write anywhere but at the current end is refused.
/// What `cbd convert DEVICE -` writes to: its own output target, opened once.
public final class StreamOutput: BlockDevice, OutputTarget {
    public let path = "standard output"
    public private(set) var size = 0
    public let isWritable = true
    let fd: Int32
    private var position = 0

    /// Streams to `fd`, the size `open` is given.
    public init(fd: Int32 = 1) {
        self.fd = fd
    }

    // MARK: As an output target: nothing to name, make durable or take back.

    public var name: String { path }
    public var isFresh: Bool { false }
    public var scratchDirectory: String { "/var/tmp" }

    public func open(size: Int) throws -> any BlockDevice {
        guard position == 0 else { throw CBDError("\(path): already written") }
        self.size = size
        return self
    }

    public func abandon() {}
    public func commit() throws {}
    public func isSame(as device: any BlockDevice) -> Bool { false }

    // MARK: As a device

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        throw CBDError("\(path): cannot be read back")
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: Int) throws {
        guard offset == position else { throw CBDError("\(path): written out of order at byte \(offset)") }
        guard let base = buffer.baseAddress else { return }
        let done = try transfer(buffer.count, { Glibc.write(fd, base + $0, buffer.count - $0) }) {
            systemError("write error at byte \(offset + $1)", path, errno: $0)
        }
        if done < buffer.count { throw systemError("write error at byte \(offset + done)", path, errno: EIO) }
        position += buffer.count
    }

    public func zero(_ range: Range<Int>) throws {
        let zeros = ByteBuffer(count: min(1 << 20, max(range.count, 1)))
        var off = range.lowerBound
        while off < range.upperBound {
            let n = min(zeros.count, range.upperBound - off)
            try write(UnsafeRawBufferPointer(zeros[0..<n]), at: off)
            off += n
        }
    }

    /// Nothing to make durable: a pipe has no storage.
    public func sync() throws {}
}

// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice
/// Writes allocation entries into tables that already read as zeros (a fresh sparse file,
/// or tables zeroed first), gathering neighbouring entries into large writes. Only the
/// entries put are written: the cost follows the allocated blocks, not the table size.
package final class TableStream {
    let device: BlockDevice
    let entryLen: Int
    private let buffer: ByteBuffer
    private var used = 0
    /// Device byte offset of the buffer's first byte.
    private var offset = 0

    package init(device: BlockDevice, entryLen: Int) {
        self.device = device
        self.entryLen = entryLen
        buffer = ByteBuffer(count: max(1 << 20, entryLen))
    }

    /// Lets `fill` write the entry at device byte `at`; an entry that does not follow the
    /// previous one starts a new write.
    package func put(at position: Int, _ fill: (UnsafeMutableRawPointer) throws -> Void) throws {
        if used > 0 && (position != offset + used || used + entryLen > buffer.count) { try flush() }
        if used == 0 { offset = position }
        try fill(buffer.base + used)
        used += entryLen
    }

    /// Writes what is gathered.
    package func flush() throws {
        guard used > 0 else { return }
        try device.write(UnsafeRawBufferPointer(buffer[0..<used]), at: offset)
        used = 0
    }
}

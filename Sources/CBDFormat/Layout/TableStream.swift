/// Writes a zone's table as a stream of entries, in large writes.
final class TableStream {
    let device: BlockDevice
    let entryLen: Int
    /// On a fresh (all-zero, sparse) output, all-zero chunks are left as holes.
    let skipZeros: Bool
    private let buffer: ByteBuffer
    private var used = 0
    private var offset = 0

    init(device: BlockDevice, entryLen: Int, skipZeros: Bool) {
        self.device = device
        self.entryLen = entryLen
        self.skipZeros = skipZeros
        buffer = ByteBuffer(count: max(1 << 20, entryLen))
    }

    /// Starts a table at byte `offset` of the device (a table's first pblk).
    func start(at offset: Int) {
        self.offset = offset
        used = 0
    }

    /// Lets `fill` write one entry at the end of the stream.
    func append(_ fill: (UnsafeMutableRawPointer) throws -> Void) throws {
        if used + entryLen > buffer.count { try flush() }
        try fill(buffer.base + used)
        used += entryLen
    }

    func finish() throws {
        // Pad to the end of the table's last pblk (the rest of it is zero). The stream's
        // position is absolute: after a flush the buffer no longer starts on a pblk boundary.
        let end = offset + used
        let padding = (end + Units.pblkSize - 1) / Units.pblkSize * Units.pblkSize - end
        if used + padding > buffer.count { try flush() }
        (buffer.base + used).initializeMemory(as: UInt8.self, repeating: 0, count: padding)
        used += padding
        try flush()
    }

    private func flush() throws {
        guard used > 0 else { return }
        if !(skipZeros && isAllZero(buffer.base, used)) {
            try device.write(UnsafeRawBufferPointer(buffer[0..<used]), at: offset)
        }
        offset += used
        used = 0
    }
}

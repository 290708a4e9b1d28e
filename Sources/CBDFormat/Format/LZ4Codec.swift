import CLZ4

/// LZ4 block format through the system's liblz4.
package enum LZ4Codec {
    /// Compresses `count` bytes from `src` into at most `capacity` bytes at `dst`.
    /// Returns the compressed length, or nil when it does not fit (store the block raw then).
    package static func compress(_ src: UnsafeRawPointer, count: Int,
                                into dst: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        guard count <= Int(LZ4_MAX_INPUT_SIZE), capacity > 0 else { return nil }
        let n = LZ4_compress_default(src.assumingMemoryBound(to: CChar.self),
                                     dst.assumingMemoryBound(to: CChar.self),
                                     Int32(count), Int32(min(capacity, Int(Int32.max))))
        return n > 0 ? Int(n) : nil
    }

    /// Decompresses `count` bytes into exactly `expected` bytes at `dst`; false when the data
    /// is corrupt or does not produce exactly `expected` bytes.
    package static func decompress(_ src: UnsafeRawPointer, count: Int,
                                  into dst: UnsafeMutableRawPointer, expected: Int) -> Bool {
        guard count > 0, count <= Int(Int32.max), expected <= Int(Int32.max) else { return false }
        let n = LZ4_decompress_safe(src.assumingMemoryBound(to: CChar.self),
                                    dst.assumingMemoryBound(to: CChar.self),
                                    Int32(count), Int32(expected))
        return Int(n) == expected
    }
}

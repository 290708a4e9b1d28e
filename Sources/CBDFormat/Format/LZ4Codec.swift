// SPDX-License-Identifier: Apache-2.0
import Glibc
import CLZ4

/// LZ4 block format through the system's liblz4.
package enum LZ4Codec {
    /// Compresses `count` bytes from `src` into at most `capacity` bytes at `dst`, at `level`
    /// (fast, or LZ4HC with this thread's state). Returns the compressed length, or nil when
    /// it does not fit (store the block raw then).
    package static func compress(
        _ src: UnsafeRawPointer, count: Int, into dst: UnsafeMutableRawPointer,
        capacity: Int, level: CompressionLevel = .fast
    ) -> Int? {
        guard count <= Int(LZ4_MAX_INPUT_SIZE), capacity > 0 else { return nil }
        let s = src.assumingMemoryBound(to: CChar.self), d = dst.assumingMemoryBound(to: CChar.self)
        let cap = Int32(min(capacity, Int(Int32.max)))
        let n: Int32
        if level.isHighCompression, let state = hcState() {
            n = LZ4_compress_HC_extStateHC(state, s, d, Int32(count), cap, Int32(level.value))
        } else {
            n = LZ4_compress_default(s, d, Int32(count), cap)
        }
        return n > 0 ? Int(n) : nil
    }

    /// LZ4HC's working memory (LZ4_sizeofStateHC, about 256 KiB), one per thread: made on a
    /// thread's first HC block and freed with the thread, so workers never share or re-allocate it.
    private static func hcState() -> UnsafeMutableRawPointer? {
        if let p = pthread_getspecific(hcStateKey) { return p }
        guard let p = malloc(Int(LZ4_sizeofStateHC())) else { return nil }
        pthread_setspecific(hcStateKey, p)
        return p
    }

    /// Creates the key of the per-thread LZ4HC state now. A server calls it before its threads
    /// exist: the lazy creation's once-guard lives in the Swift runtime, which ThreadSanitizer
    /// does not see, so a first use from two threads at once reads as a race to it.
    package static func prepareThreads() { _ = hcStateKey }

    private static let hcStateKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { free($0) }
        return key
    }()

    /// Decompresses `count` bytes into exactly `expected` bytes at `dst`; false when the data
    /// is corrupt or does not produce exactly `expected` bytes.
    package static func decompress(
        _ src: UnsafeRawPointer, count: Int,
        into dst: UnsafeMutableRawPointer, expected: Int
    ) -> Bool {
        guard count > 0, count <= Int(Int32.max), expected <= Int(Int32.max) else { return false }
        let n = LZ4_decompress_safe(
            src.assumingMemoryBound(to: CChar.self),
            dst.assumingMemoryBound(to: CChar.self),
            Int32(count), Int32(expected))
        return Int(n) == expected
    }

    /// Decompresses bytes `part` of a block of `blockSize` bytes into `dst` (`part.count`
    /// bytes): a whole block directly, a part by decoding only up to its end (in a buffer of
    /// `part.upperBound` bytes, made here). False when the data is corrupt or too short.
    package static func decompress(
        _ src: UnsafeRawPointer, count: Int, part: Range<Int>, ofBlock blockSize: Int,
        into dst: UnsafeMutableRawPointer
    ) -> Bool {
        if part == 0..<blockSize { return decompress(src, count: count, into: dst, expected: blockSize) }
        let decoded = ByteBuffer(uninitializedCount: part.upperBound)  // decoded whole, or not used
        guard decompress(src, count: count, into: decoded.base, prefix: part.upperBound) else { return false }
        dst.copyMemory(from: decoded.base + part.lowerBound, byteCount: part.count)
        return true
    }

    /// Decompresses only the first `prefix` bytes of a block (liblz4's partial decoding stops
    /// once they are out): a small read of a huge block costs what precedes it, not the block.
    /// False when the data is corrupt or ends before `prefix` bytes.
    package static func decompress(
        _ src: UnsafeRawPointer, count: Int,
        into dst: UnsafeMutableRawPointer, prefix: Int
    ) -> Bool {
        guard count > 0, count <= Int(Int32.max), prefix > 0, prefix <= Int(Int32.max) else { return false }
        let n = LZ4_decompress_safe_partial(
            src.assumingMemoryBound(to: CChar.self),
            dst.assumingMemoryBound(to: CChar.self),
            Int32(count), Int32(prefix), Int32(prefix))
        return Int(n) == prefix
    }
}

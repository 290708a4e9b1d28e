// SPDX-License-Identifier: Apache-2.0
import CZlib

/// zlib's crc32: the checksum of the undo file's records and of a server's status file.
enum CRC32 {
    static func of(_ p: UnsafeRawPointer, _ count: Int, _ seed: UInt32 = 0) -> UInt32 {
        UInt32(truncatingIfNeeded: crc32(UInt(seed), p.assumingMemoryBound(to: UInt8.self), UInt32(count)))
    }

    static func of(_ bytes: [UInt8], _ seed: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { of($0.baseAddress!, $0.count, seed) }
    }
}

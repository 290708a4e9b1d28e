// SPDX-License-Identifier: Apache-2.0
import Testing
@testable import CBDFormat
@testable import CBDVolume
@testable import CBDTestSupport

/// Writes that pack their whole blocks ahead (`packAhead`, as the plugin does with no lock) and
/// read ahead the blocks they change in part (`prefetch`) behave exactly as plain writes.
@Suite struct WriteAheadTests {
    let bs = 65536

    /// One write of the script: `count` bytes at `offset`, of a kind.
    struct Step {
        let offset: Int
        let bytes: [UInt8]
    }

    func bytes(_ kind: Int, _ count: Int, _ rng: inout SplitMix) -> [UInt8] {
        switch kind {
        case 0: return [UInt8](repeating: 0, count: count)
        case 1: return (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }  // does not compress
        default:
            let seed = UInt8(truncatingIfNeeded: rng.next())
            return (0..<count).map { UInt8(truncatingIfNeeded: $0 / 64) &+ seed }
        }
    }

    /// A script of whole-block and partial writes over 12 blocks: zeros, random and
    /// compressible bytes, aligned and not, one to three blocks long.
    func script() -> [Step] {
        var rng = SplitMix(seed: 35)
        return (0..<80).map { i in
            let whole = i % 3 != 2
            let first = Int(rng.next() % 10)
            let offset = whole ? first * bs : first * bs + Int(rng.next() % UInt64(bs))
            let count = whole ? bs * (1 + Int(rng.next() % 3)) : 1 + Int(rng.next() % UInt64(bs))
            return Step(offset: offset, bytes: bytes(Int(rng.next() % 3), count, &rng))
        }
    }

    func read(_ v: Volume, _ offset: Int, _ count: Int, shared: Bool) throws -> [UInt8] {
        var out = [UInt8](repeating: 0xEE, count: count)
        try out.withUnsafeMutableBytes {
            if shared { try v.readShared(into: $0, at: offset) } else { try v.read(into: $0, at: offset) }
        }
        return out
    }

    @Test func packedAheadWritesReadBackAndStoreAsPlainWrites() throws {
        let packedDev = try memoryDevice(physical: 8 << 20, logical: 16 << 20, lblkShift: 4)
        let plainDev = try memoryDevice(physical: 8 << 20, logical: 16 << 20, lblkShift: 4)
        // A cache of three blocks: packed blocks are evicted, committed and loaded again.
        let packed = try Volume(device: packedDev, cacheBytes: 3 * bs)
        let plain = try Volume(device: plainDev, cacheBytes: 3 * bs)
        var model = [UInt8](repeating: 0, count: 12 * bs)
        var heldPacked = 0
        for (i, step) in script().enumerated() {
            try step.bytes.withUnsafeBytes { buf in
                let ahead = packed.prefetch(
                    offset: step.offset, length: buf.count, adding: packed.packAhead(buf, at: step.offset))
                try packed.write(buf, at: step.offset, ahead: ahead)
                try plain.write(buf, at: step.offset)
            }
            model.replaceSubrange(step.offset..<step.offset + step.bytes.count, with: step.bytes)
            let n = step.offset / bs
            if step.offset % bs == 0, let b = packed.blocks.peek(n), b.form != nil { heldPacked += 1 }
            // Every block the step touched, and a part of one, read both ways.
            let span = step.offset / bs * bs..<min(12 * bs, (step.offset + step.bytes.count + bs - 1) / bs * bs)
            for shared in [false, true] {
                let whole = try read(packed, span.lowerBound, span.count, shared: shared)
                let part = try read(packed, step.offset + 3, min(5000, step.bytes.count - 3), shared: shared)
                let wholeRight = whole == Array(model[span])
                let partRight = part == Array(model[step.offset + 3..<step.offset + 3 + part.count])
                #expect(wholeRight && partRight, "step \(i): read (shared: \(shared)) differs from the model")
            }
            if i % 17 == 16 { try packed.flush() }
        }
        #expect(heldPacked > 20, "whole blocks written ahead were not held packed (\(heldPacked))")
        try packed.close()
        try plain.close()
        // Stored as a plain write stores them: the same form and size, block for block.
        let reopened = try Volume(device: packedDev)
        let plainReopened = try Volume(device: plainDev)
        for n in 0..<12 {
            let a = try reopened.entry(n), b = try plainReopened.entry(n)
            #expect(a.kindAndLength == b.kindAndLength, "block \(n): \(a) packed ahead, \(b) written plainly")
        }
        let stored = try read(reopened, 0, 12 * bs, shared: false) == model
        #expect(stored, "the device differs from the model after close")
    }
}

extension AllocationEntry {
    /// The entry but for where its pblks lie.
    fileprivate var kindAndLength: String {
        switch self {
        case .unallocated: return "unallocated"
        case .raw(let p): return "raw \(p.count)"
        case .compressed(let length, let p): return "compressed \(length) in \(p.count)"
        }
    }
}

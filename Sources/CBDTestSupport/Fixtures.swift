// SPDX-License-Identifier: Apache-2.0
import Foundation
import CBDFormat
import CBDDevice
import CBDVolume
import CBDLayout

/// What the unit and the end-to-end tests share: scratch folders, file facts, a deterministic
/// generator and devices formatted in memory.

/// A scratch folder removed at the end of a test.
public final class Scratch: Sendable {
    public let path: String
    public init(under base: String = NSTemporaryDirectory()) throws {
        path = base + "/cbd-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    public func file(_ name: String) -> String { path + "/" + name }
}

/// Bytes of a file, and its allocated size on disk.
public enum FileFacts {
    public static func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }
    public static func allocated(_ path: String) -> Int {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_blocks) * 512 : -1
    }
    public static func size(_ path: String) -> Int {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : -1
    }
}

/// A small deterministic generator for test data.
public struct SplitMix: RandomNumberGenerator {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A device in memory formatted as mkfs.cbd would.
public func memoryDevice(physical: Int, logical: Int, lblkShift: Int) throws -> MemoryDevice {
    let g = try LayoutPlanner.plan(physicalBytes: physical, logicalBytes: logical, lblkShift: lblkShift)
    let d = MemoryDevice(size: g.physicalBytes)
    try Formatter.format(d, geometry: g)
    return d
}

/// A device in memory with `blocks` blocks written every `every` lblks from lblk 0 (random,
/// or compressible, by a seeded draw); returns it and its logical bytes up to the last one.
public func populatedDevice(
    physical: Int, logical: Int, lblkShift: Int = 4, blocks: Int, every: Int = 1,
    seed: UInt64 = 1
) throws -> (MemoryDevice, [UInt8]) {
    let mem = try memoryDevice(physical: physical, logical: logical, lblkShift: lblkShift)
    let vol = try Volume(device: mem)
    var rng = SplitMix(seed: seed)
    let bs = vol.geometry.lblkSize
    for n in stride(from: 0, to: min(blocks * every, vol.geometry.nrLblk), by: every) {
        let kind = rng.next() % 3
        let block: [UInt8] = (0..<bs).map { i in
            kind == 0 ? UInt8(truncatingIfNeeded: rng.next()) : UInt8(truncatingIfNeeded: i / 11 + n)
        }
        try block.withUnsafeBytes { try vol.write($0, at: n * bs) }
    }
    try vol.close()
    return (mem, try logicalBytes(mem, count: min(blocks * every, vol.geometry.nrLblk) * bs))
}

/// The first `count` bytes of the logical device (all of it by default).
extension Volume {
    /// `count` logical bytes read at `offset`, as a new array.
    public func bytes(at offset: Int, count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0xEE, count: count)
        try out.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        return out
    }

    /// Writes `bytes` at logical offset `offset`.
    public func write(_ bytes: [UInt8], at offset: Int) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }
}

public func logicalBytes(_ d: BlockDevice, count: Int? = nil) throws -> [UInt8] {
    let v = try Volume(device: d)
    var out = [UInt8](repeating: 0, count: min(count ?? v.logicalSize, v.logicalSize))
    try out.withUnsafeMutableBytes { try v.read(into: $0, at: 0) }
    return out
}

/// Where a volume's bitmaps and entries disagree: a pblk used twice, a used pblk not marked,
/// a marked one nobody uses (empty when consistent).
public func bitmapMismatches(_ v: Volume) throws -> [String] {
    let g = v.geometry
    var used = Set<Int>(), wrong: [String] = []
    for n in 0..<g.nrLblk {
        for p in try v.entry(n).pblks where !used.insert(Int(p)).inserted { wrong.append("pblk \(p) cross-linked") }
    }
    for z in 0..<g.nrZones {
        let bm = try v.meta.bitmap(z)
        for k in 0..<g.dataPblkCount(z) where bm.isSet(k) != used.contains(g.dataStart(z) + k) {
            wrong.append("zone \(z) bit \(k)")
        }
    }
    return wrong
}

/// The header and geometry of `device` as a tool opens it (`OpenedDevice`, an interrupted
/// update allowed): what a test looks at after a tool ran.
public func headerAndGeometry(_ device: any BlockDevice) throws -> (Header, Geometry) {
    let opened = try OpenedDevice(device, allowing: .interruptedUpdate)
    return (opened.header, opened.geometry)
}

// SPDX-License-Identifier: Apache-2.0
import CBDFormat
/// Where a CBD device's bytes live: an image file, a block device, or memory in tests.
///
/// Offsets and lengths are in bytes. Implementations report failures as `CBDError`
/// naming the path, so tools can print them as they are.
public protocol BlockDevice: AnyObject {
    /// The path (or a name) used in messages.
    var path: String { get }
    /// Usable size in bytes.
    var size: Int { get }
    var isWritable: Bool { get }
    /// Fills `buffer` from `offset`; throws on a short read.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws
    func write(_ buffer: UnsafeRawBufferPointer, at offset: Int) throws
    /// Makes `range` read as zeros, releasing space where the medium allows.
    func zero(_ range: Range<Int>) throws
    /// Makes every write so far durable.
    func sync() throws
    /// Gives back the space of `range`, whose contents no longer matter (freed pblks), where
    /// that is cheap: a hole in an image file. Does nothing where it is not.
    func release(_ range: Range<Int>)
    /// Whether `range` is known to read as zeros without reading it (a hole in a sparse file).
    func isHole(_ range: Range<Int>) -> Bool
    /// Grows or shrinks the storage (an image file); a block device cannot.
    func setSize(_ bytes: Int) throws
    /// The first byte at or after `offset` that may hold data (SEEK_DATA on a sparse file);
    /// nil when only holes follow. A device that cannot tell answers `offset` itself, so a
    /// reader that skips holes reads everything there.
    func nextData(from offset: Int) -> Int?
    /// The first byte at or after `offset` (which holds data) that lies in a hole or at the
    /// end (SEEK_HOLE); a device that cannot tell answers its size.
    func nextHole(from offset: Int) -> Int
    /// The open file behind this device, which `copyInKernel` can copy out of; nil in memory.
    var openFile: Int32? { get }
    /// Copies `count` bytes of the file `fd` from `offset` to this device at `target` inside the
    /// kernel (copy_file_range: a reflink where the filesystem can); false when it cannot, and
    /// the caller copies through a buffer. A capability, as unix_io's under e2fsprogs' io_manager.
    func copyInKernel(_ count: Int, from fd: Int32, at offset: Int, to target: Int) -> Bool
}

extension BlockDevice {
    public func isHole(_ range: Range<Int>) -> Bool { false }

    public func nextHole(from offset: Int) -> Int { size }

    public var openFile: Int32? { nil }

    public func nextData(from offset: Int) -> Int? { offset < size ? offset : nil }

    public func copyInKernel(_ count: Int, from fd: Int32, at offset: Int, to target: Int) -> Bool { false }

    public func release(_ range: Range<Int>) {}

    /// Releases the space of `pblks`, a run of neighbours at a time.
    public func release(pblks: [Pblk]) {
        for run in PblkRuns(pblks.map { Int($0) }.sorted()) {
            release(run.first * Units.pblkSize..<(run.first + run.slots.count) * Units.pblkSize)
        }
    }

    public func setSize(_ bytes: Int) throws {
        guard bytes <= size else {
            throw CBDError("\(path): cannot grow past its size of \(size) bytes")
        }
    }

    /// Reads `count` pblks from pblk `p` into a new array.
    public func readPblks(_ p: Int, count: Int = 1) throws -> [UInt8] {
        var b = [UInt8](repeating: 0, count: count * Units.pblkSize)
        try b.withUnsafeMutableBytes { try read(into: $0, at: p * Units.pblkSize) }
        return b
    }

    /// Reads the pblks of an entry, in slot order, into `dst`: one read per contiguous run.
    public func readPblkRuns(_ pblks: [Pblk], into dst: UnsafeMutableRawPointer) throws {
        for run in PblkRuns(pblks) {
            try read(
                into: UnsafeMutableRawBufferPointer(
                    start: dst + run.slots.lowerBound * Units.pblkSize,
                    count: run.slots.count * Units.pblkSize),
                at: run.first * Units.pblkSize)
        }
    }

    public func writePblks(_ bytes: [UInt8], at p: Int) throws {
        try bytes.withUnsafeBytes { try write($0, at: p * Units.pblkSize) }
    }
}

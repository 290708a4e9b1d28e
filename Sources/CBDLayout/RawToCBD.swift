// SPDX-License-Identifier: Apache-2.0
import Dispatch
import Glibc
import CBDFormat
import CBDDevice

/// Converts a raw image (or block device) into a CBD device.
///
/// Pass 1 reads the input in large windows, skips holes (SEEK_DATA/SEEK_HOLE), and
/// compresses on all cores; one length per block goes to an unlinked spill file. Knowing the
/// exact data size, pass 2 chooses the geometry (compact by default), writes bitmaps and
/// tables, and the header last. The packed data goes, in an image file, straight to its place
/// in a layout guessed before pass 1, since where data lies depends only on the size of the
/// tables (the requested size, or an estimate of the data: `estimatePackedPblks`); a wrong
/// guess costs one copy into a file of the right layout. On an existing device, whose old
/// content must stay until pass 1 has succeeded, it goes to a spill and is copied in pass 2.
/// Memory is bounded by the window size, whatever the image size.
public struct RawToCBD {
    public var lblkShift = 4
    /// Physical size of the output; nil for a compact device (data plus headroom).
    public var physicalBytes: Int?
    /// A logical size the output can grow to in place (`-E resize=`): its tables are sized
    /// for it. Nil: for its own logical size.
    public var growLogicalTo: Int?
    /// Erase the signatures (filesystems, partition tables, a CBD) an output block device
    /// holds, after pass 1 and just before writing: a conversion that fails before (input
    /// unreadable, no room for the spill, too large for the device) leaves it as it was.
    public var wipeSignatures = false
    public var progress: ProgressHandler?
    /// How hard blocks are compressed (LZ4HC from 2); the output reads the same at every level.
    public var level = CompressionLevel.fast
    /// Tests: the data size (pblks) to guess the layout from, instead of the estimate.
    var packedPblksGuess: Int?
    /// Input bytes each worker handles per window.
    public var bytesPerWorker = 8 << 20
    /// What the windows' buffers may take (huge blocks: fewer blocks in flight).
    public var memory = MemoryBudget.standard

    /// Compact devices keep 1/64 of their data size free, and at least this many pblks.
    public static let headroomDivisor = 64
    public static let minHeadroomPblks = 256

    public init() {}

    /// Converts `input` into `target`: straight into place in a fresh output, through a
    /// spill into an existing device (`OutputTarget.isFresh`).
    public func convert(input: any BlockDevice, to target: any OutputTarget) throws -> ConvertSummary {
        try target.refuse(input: input)
        let lblkSize = Units.pblkSize << lblkShift
        guard input.size > 0 else { throw CBDError("\(input.path): input is empty") }
        let nrLblk = (input.size + lblkSize - 1) / lblkSize
        guard nrLblk <= Int.max / lblkSize else { throw CBDError("\(input.path): input is too large") }
        let lengths = try Spill(directory: target.scratchDirectory)
        var summary: ConvertSummary
        let g: Geometry
        if target.isFresh {
            (summary, g) = try convertInPlace(input, nrLblk: nrLblk, to: target, lengths: lengths)
        } else {
            (summary, g) = try convertThroughSpill(
                input, nrLblk: nrLblk, to: target, lengths: lengths,
                spill: Spill(directory: target.scratchDirectory))
        }
        summary.inputBytes = input.size
        summary.logicalBytes = g.logicalBytes
        summary.physicalBytes = g.physicalBytes
        return summary
    }

    /// A fresh output: the data is written where a guessed layout puts it; when the real data
    /// size calls for tables of another size, that output is abandoned (a file gives up its
    /// name) and its data copied into a new one.
    private func convertInPlace(
        _ input: any BlockDevice, nrLblk: Int, to target: any OutputTarget,
        lengths: Spill
    ) throws -> (ConvertSummary, Geometry) {
        let expected = physicalBytes == nil ? try packedPblksGuess ?? estimatePackedPblks(input) : 0
        let guess = try chooseGeometry(dataPblks: expected, nrLblk: nrLblk, for: target.name)
        let first = try target.open(size: guess.physicalBytes)
        let data = PlacedStream(device: first, layout: guess)
        var summary = try compress(input, nrLblk: nrLblk, data: data, lengths: lengths)
        let g = try chooseGeometry(dataPblks: data.size / Units.pblkSize, nrLblk: nrLblk, near: guess, for: target.name)
        var out = first
        if g.tableBlocks == guess.tableBlocks {
            try first.setSize(g.physicalBytes)
        } else {
            target.abandon()
            out = try target.open(size: g.physicalBytes)
            summary.dataCopied = true
        }
        try Assembler(geometry: g, data: data, lengths: lengths).write(into: out, fresh: true)
        try target.commit()
        return (summary, g)
    }

    /// An existing device: nothing is written to it until pass 1 has succeeded.
    private func convertThroughSpill(
        _ input: any BlockDevice, nrLblk: Int, to target: any OutputTarget,
        lengths: Spill, spill: Spill
    ) throws -> (ConvertSummary, Geometry) {
        var summary = try compress(input, nrLblk: nrLblk, data: spill, lengths: lengths)
        summary.dataCopied = true
        let g = try chooseGeometry(dataPblks: spill.size / Units.pblkSize, nrLblk: nrLblk, for: target.name)
        let out = try target.open(size: g.physicalBytes)
        if wipeSignatures { try Signatures.wipe(device: out) }
        try Assembler(geometry: g, data: spill, lengths: lengths).write(into: out, fresh: false)
        try target.commit()
        return (summary, g)
    }

    // MARK: Pass 1: compress

    /// A window of blocks, cut into chunks that the cores take in turn (a chunk of zeros is
    /// quick, one of text is not: equal halves per core left one idle). A chunk's compressed
    /// data lands at the chunk's own offset in `output`, since it never outgrows its input.
    /// Two windows alternate, so that one is written out while the next compresses.
    final class Batch: @unchecked Sendable {
        let input: ByteBuffer, output: ByteBuffer
        let chunkBlocks: Int
        var outUsed: [Int]
        var lens: [UInt32]
        var first = 0, count = 0
        var extents: [Range<Int>] = []
        var chunks: Int { (count + chunkBlocks - 1) / chunkBlocks }
        init(blocks: Int, lblkSize: Int, chunkBlocks: Int) {
            input = ByteBuffer(count: blocks * lblkSize)
            output = ByteBuffer(count: blocks * lblkSize)
            self.chunkBlocks = chunkBlocks
            outUsed = [Int](repeating: 0, count: (blocks + chunkBlocks - 1) / chunkBlocks)
            lens = [UInt32](repeating: 0, count: blocks)
        }
    }

    /// Bytes of input per chunk: small enough to balance the cores, large enough that the
    /// output sees few writes.
    static let chunkBytes = 1 << 20

    package func compress(_ input: any BlockDevice, nrLblk: Int, data: any PackedStream, lengths: Spill) throws
        -> ConvertSummary
    {
        let lblkSize = Units.pblkSize << lblkShift
        // Each block of a window takes an input and an output buffer.
        let (window, windows) = memory.windows(
            preferred: max(1, bytesPerWorker / lblkSize) * Parallel.workers,
            blockBytes: lblkSize, buffersPerBlock: 2)
        let chunkBlocks = max(1, RawToCBD.chunkBytes / lblkSize)
        let batches = (0..<windows).map { _ in Batch(blocks: window, lblkSize: lblkSize, chunkBlocks: chunkBlocks) }
        var summary = ConvertSummary()
        summary.blocks = nrLblk
        /// Appends a compressed batch's data and lengths, in block order.
        func finish(_ b: Batch) throws {
            for c in 0..<b.chunks where b.outUsed[c] > 0 {
                try data.append(b.output.base + c * chunkBlocks * lblkSize, b.outUsed[c])
            }
            try b.lens.withUnsafeBytes { try lengths.append($0.baseAddress!, b.count * 4) }
            for word in b.lens[0..<b.count] {
                switch PackedBlock(logWord: word) {
                case .zero: summary.unallocatedBlocks += 1
                case .raw: summary.rawBlocks += 1
                case .compressed: summary.compressedBlocks += 1
                }
            }
            progress?(min((b.first + b.count) * lblkSize, input.size), input.size)
        }
        let buffer = DoubleBuffer(batches, overlappingFills: true, write: finish)
        var first = 0
        var holes = HoleMap(input)
        while first < nrLblk {
            // Blocks in a hole of the input are unallocated: a hole in the length log too,
            // and nothing read, cleared or compressed. The next window starts at the data.
            let data0 = holes.data(after: first * lblkSize).map { $0.lowerBound / lblkSize } ?? nrLblk
            if data0 > first {
                try buffer.flush()
                let skipped = min(data0, nrLblk) - first
                try lengths.extend(to: (first + skipped) * 4)
                summary.unallocatedBlocks += skipped
                first += skipped
                progress?(min(first * lblkSize, input.size), input.size)
                continue
            }
            let count = min(window, nrLblk - first)
            let extents = holes.dataRanges(in: first * lblkSize..<min((first + count) * lblkSize, input.size))
            let job = UncheckedBox((self, input))
            try buffer.start(prepare: { [first] b in (b.first, b.count, b.extents) = (first, count, extents) }) { b in
                try job.value.0.compressBatch(job.value.1, b)
            }
            first += count
        }
        try buffer.flush()
        summary.dataPblks = data.size / Units.pblkSize
        return summary
    }

    /// Packs one block at `out` (`PackedBlock.pack`; a raw block is copied there as it is):
    /// its length log word and the bytes it takes there.
    func pack(_ src: UnsafeRawPointer, into out: UnsafeMutableRawPointer) -> (len: UInt32, bytes: Int) {
        let lblkSize = Units.pblkSize << lblkShift
        let block = PackedBlock.pack(src, lblkSize: lblkSize, into: out, level: level)
        if block == .raw { out.copyMemory(from: src, byteCount: lblkSize) }
        return (block.logWord, block.bytes(lblkSize: lblkSize))
    }

    /// Reads and compresses a batch on all cores, a chunk at a time; compressed data is
    /// padded to whole pblks and packed at the start of the chunk's output.
    private func compressBatch(_ input: any BlockDevice, _ b: Batch) throws {
        let lblkSize = Units.pblkSize << lblkShift
        try b.lens.withUnsafeMutableBufferPointer { lensPtr in
            try b.outUsed.withUnsafeMutableBufferPointer { usedPtr in
                let l = UncheckedBox(lensPtr), u = UncheckedBox(usedPtr)
                try Parallel.forEachSlice(count: b.chunks, parts: b.chunks) { c, _ in
                    let lo = c * b.chunkBlocks, hi = min(lo + b.chunkBlocks, b.count)
                    let src0 = b.input.base + lo * lblkSize, out = b.output.base + lo * lblkSize
                    try read(
                        input, lblks: b.first + lo..<b.first + hi, extents: b.extents,
                        into: b.input[lo * lblkSize..<hi * lblkSize])
                    var used = 0
                    for i in 0..<hi - lo {
                        let (len, bytes) = pack(src0 + i * lblkSize, into: out + used)
                        l.value[lo + i] = len
                        used += bytes
                    }
                    u.value[c] = used
                }
            }
        }
    }

    /// Fills `buffer` with the blocks `lblks`, reading only the input's data `extents`
    /// (sorted); the rest reads as zeros.
    func read(
        _ input: any BlockDevice, lblks: Range<Int>, extents: [Range<Int>],
        into buffer: UnsafeMutableRawBufferPointer
    ) throws {
        let lblkSize = Units.pblkSize << lblkShift
        let start = lblks.lowerBound * lblkSize, end = lblks.upperBound * lblkSize
        var pos = start
        for e in extents where e.upperBound > start && e.lowerBound < end {
            let from = max(e.lowerBound, start), to = min(e.upperBound, end)
            if from > pos { zero(buffer, pos - start..<from - start) }
            try input.read(
                into: UnsafeMutableRawBufferPointer(rebasing: buffer[(from - start)..<(to - start)]),
                at: from)
            pos = to
        }
        if pos < end { zero(buffer, pos - start..<end - start) }
    }

    private func zero(_ buffer: UnsafeMutableRawBufferPointer, _ range: Range<Int>) {
        UnsafeMutableRawBufferPointer(rebasing: buffer[range]).initializeMemory(as: UInt8.self, repeating: 0)
    }

    // MARK: Pass 2: lay out

    /// The geometry: the requested physical size, or the smallest that holds the data plus
    /// headroom. `near`: a layout the data already lies in; its table size is kept when that
    /// costs at most 1/64 more space than the smallest (a copy of all the data saved).
    /// `name`: the output, named by a refusal.
    func chooseGeometry(dataPblks d: Int, nrLblk: Int, near guess: Geometry? = nil, for name: String) throws -> Geometry
    {
        let logical = nrLblk * (Units.pblkSize << lblkShift)
        if let grow = growLogicalTo {
            // Planned for the larger size, then holding this one: the same zones and tables.
            let lblk = Units.pblkSize << lblkShift
            var c = self
            c.growLogicalTo = nil
            let planned = try c.chooseGeometry(
                dataPblks: d, nrLblk: max(nrLblk, (grow + lblk - 1) / lblk), near: guess,
                for: name)
            return try LayoutPlanner.holding(logicalBytes: logical, in: planned)
        }
        if let p = physicalBytes {
            let g = try LayoutPlanner.plan(physicalBytes: p, logicalBytes: logical, lblkShift: lblkShift)
            guard g.totalDataPblks >= d else {
                throw SizeError.physicalTooSmall(path: name, physicalBytes: p, holds: g.totalDataPblks, needs: d)
            }
            return g
        }
        let need = d + max(d / RawToCBD.headroomDivisor, RawToCBD.minHeadroomPblks)
        let best = try LayoutPlanner.compact(dataPblks: need, logicalBytes: logical, lblkShift: lblkShift)
        guard let guess, best.tableBlocks != guess.tableBlocks,
            let kept = try? LayoutPlanner.compact(
                dataPblks: need, logicalBytes: logical, lblkShift: lblkShift,
                zoneShifts: guess.lblkPerZoneShift...guess.lblkPerZoneShift),
            kept.tableBlocks == guess.tableBlocks,
            kept.nrPblk <= best.nrPblk + best.nrPblk / RawToCBD.headroomDivisor
        else { return best }
        return kept
    }
}

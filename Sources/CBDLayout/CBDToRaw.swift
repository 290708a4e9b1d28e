// SPDX-License-Identifier: Apache-2.0
import Dispatch
import CBDFormat
import CBDDevice
import CBDVolume

/// Converts a CBD device back into a raw image: unallocated blocks become holes in a file
/// (zeros on a block device). Windows of blocks are decoded on all cores; each worker reads
/// its blocks' pblks in contiguous runs, decompresses, and writes its own output range.
public struct CBDToRaw {
    /// Wipe the filesystem and partition-table signatures of an existing output device first
    /// (as `RawToCBD` does for a CBD output; the caller decides whether there are any to wipe).
    public var wipeSignatures = false
    public var progress: ProgressHandler?
    /// Read past damage (as `qemu-img convert --salvage`): a block whose entry is malformed,
    /// or whose data cannot be read or does not decompress, is written as zeros and counted
    /// in the summary (`lostBlocks`, the first few named in `lost`); the rest converts.
    public var salvage = false
    public var bytesPerWorker = 8 << 20
    /// What the windows' buffers and the workers' scratch may take (huge blocks: fewer).
    public var memory = MemoryBudget.standard

    public init() {}

    /// Converts `input` into `target`: a new file keeps unallocated blocks as holes; a device
    /// or a stream gets them as zeros.
    public func convert(input: any BlockDevice, to target: any OutputTarget) throws -> ConvertSummary {
        try target.refuse(input: input)
        let g = try geometry(of: input)
        let out = try target.open(size: g.logicalBytes)
        if wipeSignatures && !target.isFresh { try Signatures.wipe(device: out) }
        var summary = try decode(input, g, into: out, zeroHoles: !target.isFresh)
        try target.commit()
        summary.inputBytes = input.size
        summary.logicalBytes = g.logicalBytes
        summary.physicalBytes = g.physicalBytes
        return summary
    }

    /// The input's geometry; a device with an interrupted table update is refused.
    private func geometry(of input: any BlockDevice) throws -> Geometry {
        try OpenedDevice(input).geometry
    }

    /// A window of blocks inside one zone, and the buffers it is decoded into.
    final class Window: @unchecked Sendable {
        let out: ByteBuffer
        var present: [Bool]
        var first = 0, count = 0
        init(blocks: Int, lblkSize: Int) {
            out = ByteBuffer(count: blocks * lblkSize)
            present = [Bool](repeating: false, count: blocks)
        }
    }

    /// Decodes window k+1 on all cores while this thread writes window k: one writer keeps
    /// the output file's lock uncontended, and decompression overlaps the copy into the page cache.
    private func decode(
        _ input: any BlockDevice, _ g: Geometry, into out: BlockDevice,
        zeroHoles: Bool
    ) throws -> ConvertSummary {
        let codec = EntryCodec(g)
        // Each block of a window takes its output buffer; each worker a block of scratch (one
        // kept aside), and no more workers than a window has blocks or the budget allows.
        let fit = memory.windows(
            preferred: max(1, bytesPerWorker / g.lblkSize) * Parallel.workers,
            blockBytes: g.lblkSize, buffersPerBlock: 1, fixed: g.lblkSize)
        let perWindow = fit.blocks
        let workers = max(1, min(Parallel.workers, perWindow, memory.bytes / g.lblkSize - perWindow * fit.count))
        let windows = (0..<fit.count).map { _ in Window(blocks: perWindow, lblkSize: g.lblkSize) }
        let scratch = (0..<workers).map { _ in ByteBuffer(count: g.lblkSize) }
        let counts = Counters(workers)
        // Windows of the zones that hold metadata; between them (zones whose tables are holes
        // in a sparse image) every block is unallocated, found without a read.
        let zones = TableScanner(device: input, geometry: g).zonesWithMetadata()
        let ranges = zones.lazy.flatMap { z in
            let lblks = g.lblks(inZone: z)
            return stride(from: lblks.lowerBound, to: lblks.upperBound, by: perWindow).map {
                (first: $0, count: min(perWindow, lblks.upperBound - $0))
            }
        }
        // The windows share the workers' scratch: one decodes at a time, while the one before
        // it is written.
        let buffer = DoubleBuffer(windows, overlappingFills: false) { w in
            try CBDToRaw.writeWindow(w, g, to: out, zeroHoles: zeroHoles)
        }
        var holes = HoleMap(input)
        var holeBlocks = 0, done = 0
        /// Lblks `done ..< lblk` are unallocated: zeros where the output has no holes.
        func unallocated(to lblk: Int) throws {
            guard lblk > done else { return }
            holeBlocks += lblk - done
            if zeroHoles {
                try buffer.flush()
                try out.zero(done * g.lblkSize..<lblk * g.lblkSize)
            }
            done = lblk
        }
        for (first, count) in ranges {
            try unallocated(to: first)
            done = first + count
            // A window whose table is a hole (a sparse image) holds only unallocated blocks:
            // nothing to read or decode, and a hole in the output (zeros on a device or stream,
            // written after the window before it).
            let table = g.entryOffset(ofLblk: first)..<g.entryOffset(ofLblk: first) + count * g.entryLen
            if holes.isHole(table) {
                holeBlocks += count
                if zeroHoles {
                    try buffer.flush()
                    try out.zero(first * g.lblkSize..<(first + count) * g.lblkSize)
                }
                continue
            }
            let job = UncheckedBox((input, g, codec, scratch, counts, salvage))
            try buffer.start(prepare: { w in (w.first, w.count) = (first, count) }) { w in
                let (input, g, codec, scratch, counts, salvage) = job.value
                try CBDToRaw.decodeWindow(input, g, codec, w, scratch: scratch, counts: counts, salvage: salvage)
            }
            progress?(first * g.lblkSize, g.logicalBytes)
        }
        try unallocated(to: g.nrLblk)
        try buffer.flush()
        progress?(g.logicalBytes, g.logicalBytes)
        var summary = ConvertSummary()
        summary.blocks = g.nrLblk
        (summary.compressedBlocks, summary.rawBlocks, summary.unallocatedBlocks, summary.dataPblks) = counts.totals()
        summary.unallocatedBlocks += holeBlocks
        (summary.lostBlocks, summary.lost) = counts.losses()
        return summary
    }

    /// Reads the window's entries in one read and decodes its blocks on all cores.
    static func decodeWindow(
        _ input: any BlockDevice, _ g: Geometry, _ codec: EntryCodec, _ w: Window,
        scratch: [ByteBuffer], counts: Counters, salvage: Bool
    ) throws {
        let startByte = g.entryOffset(ofLblk: w.first)
        let endByte = startByte + w.count * g.entryLen
        let pblks = (endByte + Units.pblkSize - 1) / Units.pblkSize - startByte / Units.pblkSize
        let table = try input.readPblks(startByte / Units.pblkSize, count: pblks)
        let skew = startByte % Units.pblkSize
        try table.withUnsafeBytes { t in
            let tb = UncheckedBox(t.baseAddress! + skew)
            try w.present.withUnsafeMutableBufferPointer { pr in
                let present = UncheckedBox(pr)
                try Parallel.forEachSlice(count: w.count, parts: scratch.count) { worker, slice in
                    for i in slice {
                        present.value[i] = try decodeBlock(
                            input, g, codec, lblk: w.first + i,
                            entry: tb.value + i * g.entryLen,
                            into: w.out.base + i * g.lblkSize,
                            scratch: scratch[worker], counts: counts, worker: worker,
                            salvage: salvage)
                    }
                }
            }
        }
    }

    /// Decodes one block into `dst`; returns false when it is all zeros (nothing to write).
    static func decodeBlock(
        _ input: any BlockDevice, _ g: Geometry, _ codec: EntryCodec, lblk n: Int,
        entry: UnsafeRawPointer, into dst: UnsafeMutableRawPointer,
        scratch: ByteBuffer, counts: Counters, worker w: Int, salvage: Bool
    ) throws -> Bool {
        let e: AllocationEntry
        do {
            do { e = try codec.decodeChecked(entry) } catch { throw error.readError(path: input.path, lblk: n) }
            try input.readBlock(e, lblk: n, lblkSize: g.lblkSize, into: dst, scratch: scratch.base)
        } catch let error as CBDError where salvage {
            counts.lose(w, lblk: n, error.message)
            return false  // a hole, or zeros where the output has no holes
        }
        switch e {
        case .unallocated:
            counts.add(w, unallocated: 1)
            return false
        case .raw(let pblks):
            counts.add(w, raw: 1, pblks: pblks.count)
        case .compressed(_, let pblks):
            counts.add(w, compressed: 1, pblks: pblks.count)
        }
        return !isAllZero(dst, g.lblkSize)
    }

    /// Writes runs of present blocks; holes stay holes (zeros on a block device).
    static func writeWindow(_ w: Window, _ g: Geometry, to out: BlockDevice, zeroHoles: Bool) throws {
        var j = 0
        while j < w.count {
            var k = j + 1
            while k < w.count && w.present[k] == w.present[j] { k += 1 }
            let offset = (w.first + j) * g.lblkSize
            if w.present[j] {
                try out.write(UnsafeRawBufferPointer(w.out[j * g.lblkSize..<k * g.lblkSize]), at: offset)
            } else if zeroHoles {
                try out.zero(offset..<offset + (k - j) * g.lblkSize)
            }
            j = k
        }
    }
}

/// Per-worker tallies, summed at the end; each worker writes only its own slot.
final class Counters: @unchecked Sendable {
    private let c: UnsafeMutableBufferPointer<(compressed: Int, raw: Int, unallocated: Int, pblks: Int)>
    /// Salvaged blocks of one worker: how many, and the first few (lblk, why).
    private final class Losses {
        var count = 0
        var named: [(Int, String)] = []
    }
    private let lost: [Losses]
    init(_ workers: Int) {
        c = .allocate(capacity: workers)
        c.initialize(repeating: (0, 0, 0, 0))
        lost = (0..<workers).map { _ in Losses() }
    }
    deinit { c.deallocate() }
    func add(_ w: Int, compressed: Int = 0, raw: Int = 0, unallocated: Int = 0, pblks: Int = 0) {
        c[w].compressed += compressed; c[w].raw += raw; c[w].unallocated += unallocated; c[w].pblks += pblks
    }
    func totals() -> (Int, Int, Int, Int) {
        c.reduce((0, 0, 0, 0)) { ($0.0 + $1.compressed, $0.1 + $1.raw, $0.2 + $1.unallocated, $0.3 + $1.pblks) }
    }
    func lose(_ w: Int, lblk: Int, _ why: String) {
        lost[w].count += 1
        if lost[w].named.count < ConvertSummary.lostNamed { lost[w].named.append((lblk, why)) }
    }
    /// Every salvaged block, and the first ones by lblk.
    func losses() -> (Int, [ConvertSummary.Lost]) {
        let named = lost.flatMap(\.named).sorted { $0.0 < $1.0 }.prefix(ConvertSummary.lostNamed)
        return (lost.reduce(0) { $0 + $1.count }, named.map { ConvertSummary.Lost(lblk: $0.0, reason: $0.1) })
    }
}

/// Converts a CBD device back into a raw image: unallocated blocks become holes in a file
/// (zeros on a block device). Windows of blocks are decoded on all cores; each worker reads
/// its blocks' pblks in contiguous runs, decompresses, and writes its own output range.
public struct CBDToRaw {
    public var overwrite = false
    public var progress: ProgressHandler?
    public var bytesPerWorker = 8 << 20

    public init() {}

    public func convert(input: FileDevice, to outputPath: String) throws -> ConvertSummary {
        let (_, g) = try input.readHeader()
        let out = try OutputFile(path: outputPath, size: g.logicalBytes, overwrite: overwrite)
        var summary = try decode(input, g, into: out.device, zeroHoles: out.isBlockDevice)
        try out.commit()
        summary.inputBytes = input.size
        summary.logicalBytes = g.logicalBytes
        summary.physicalBytes = g.physicalBytes
        return summary
    }

    private func decode(_ input: FileDevice, _ g: Geometry, into out: FileDevice, zeroHoles: Bool) throws -> ConvertSummary {
        let codec = EntryCodec(g)
        let workers = Parallel.workers
        let perWorker = max(1, bytesPerWorker / g.lblkSize)
        let outBufs = (0..<workers).map { _ in ByteBuffer(count: perWorker * g.lblkSize) }
        let inBufs = (0..<workers).map { _ in ByteBuffer(count: g.lblkSize) }
        var summary = ConvertSummary()
        summary.blocks = g.nrLblk
        let counts = Counters(workers)
        var tableBytes = [UInt8]()
        for z in 0..<g.nrZones {
            let zoneLblks = g.lblks(inZone: z)
            var first = zoneLblks.lowerBound
            while first < zoneLblks.upperBound {
                let count = min(perWorker * workers, zoneLblks.upperBound - first)
                // The entries of this window, in one read.
                let startByte = g.entryIndex(ofLblk: first) * g.entryLen
                let firstPblk = g.tablePblks(z).lowerBound + startByte / Units.pblkSize
                let endByte = startByte + count * g.entryLen
                let pblks = (endByte + Units.pblkSize - 1) / Units.pblkSize - startByte / Units.pblkSize
                tableBytes = try input.readPblks(firstPblk, count: pblks)
                let skew = startByte % Units.pblkSize
                let windowFirst = first
                try tableBytes.withUnsafeBytes { table in
                    let t = UncheckedBox(table)
                    try Parallel.forEachSlice(count: count, parts: workers) { w, slice in
                        try decodeSlice(input, g, codec, table: t.value.baseAddress! + skew,
                                        first: windowFirst, slice: slice, out: out, outBuf: outBufs[w],
                                        inBuf: inBufs[w], zeroHoles: zeroHoles, counts: counts, worker: w)
                    }
                }
                first += count
                progress?(first * g.lblkSize, g.logicalBytes)
            }
        }
        (summary.compressedBlocks, summary.rawBlocks, summary.unallocatedBlocks, summary.dataPblks) = counts.totals()
        return summary
    }

    /// Decodes lblks `first + slice` into `outBuf` and writes them, skipping runs of zeros.
    private func decodeSlice(_ input: FileDevice, _ g: Geometry, _ codec: EntryCodec, table: UnsafeRawPointer,
                             first: Int, slice: Range<Int>, out: FileDevice, outBuf: ByteBuffer, inBuf: ByteBuffer,
                             zeroHoles: Bool, counts: Counters, worker w: Int) throws {
        var present = [Bool](repeating: false, count: slice.count)
        for (j, i) in slice.enumerated() {
            let n = first + i
            let dst = outBuf.base + j * g.lblkSize
            let entry: AllocationEntry
            do { entry = try codec.decode(table + i * g.entryLen) } catch {
                throw CBDError("\(input.path): logical block \(n): corrupt entry: \(error)")
            }
            for p in entry.pblks where p >= UInt64(g.nrPblk) || g.dataZone(ofPblk: Int(p)) == nil {
                throw CBDError("\(input.path): logical block \(n): entry names pblk \(p) outside the data area")
            }
            switch entry {
            case .unallocated:
                counts.add(w, unallocated: 1)
                continue
            case .raw(let pblks):
                try readRuns(input, pblks, into: dst)
                counts.add(w, raw: 1, pblks: pblks.count)
            case .compressed(let len, let pblks):
                try readRuns(input, pblks, into: inBuf.base)
                guard LZ4Codec.decompress(inBuf.base, count: len, into: dst, expected: g.lblkSize) else {
                    throw CBDError("\(input.path): logical block \(n) (bytes \(n * g.lblkSize)-\((n + 1) * g.lblkSize - 1)): compressed data is corrupt")
                }
                counts.add(w, compressed: 1, pblks: pblks.count)
            }
            present[j] = !isAllZero(dst, g.lblkSize)
        }
        // Write runs of present blocks; holes stay holes (or become zeros on a block device).
        var j = 0
        while j < slice.count {
            var k = j + 1
            while k < slice.count && present[k] == present[j] { k += 1 }
            let offset = (first + slice.lowerBound + j) * g.lblkSize
            if present[j] {
                try out.write(UnsafeRawBufferPointer(outBuf[j * g.lblkSize ..< k * g.lblkSize]), at: offset)
            } else if zeroHoles {
                try out.zero(offset ..< offset + (k - j) * g.lblkSize)
            }
            j = k
        }
    }

    private func readRuns(_ input: FileDevice, _ pblks: [Pblk], into dst: UnsafeMutableRawPointer) throws {
        var i = 0
        while i < pblks.count {
            var j = i + 1
            while j < pblks.count && pblks[j] == pblks[j - 1] + 1 { j += 1 }
            try input.read(into: UnsafeMutableRawBufferPointer(start: dst + i * Units.pblkSize,
                                                               count: (j - i) * Units.pblkSize),
                           at: Int(pblks[i]) * Units.pblkSize)
            i = j
        }
    }
}

/// Per-worker tallies, summed at the end; each worker writes only its own slot.
final class Counters: @unchecked Sendable {
    private let c: UnsafeMutableBufferPointer<(compressed: Int, raw: Int, unallocated: Int, pblks: Int)>
    init(_ workers: Int) {
        c = .allocate(capacity: workers)
        c.initialize(repeating: (0, 0, 0, 0))
    }
    deinit { c.deallocate() }
    func add(_ w: Int, compressed: Int = 0, raw: Int = 0, unallocated: Int = 0, pblks: Int = 0) {
        c[w].compressed += compressed; c[w].raw += raw; c[w].unallocated += unallocated; c[w].pblks += pblks
    }
    func totals() -> (Int, Int, Int, Int) {
        c.reduce((0, 0, 0, 0)) { ($0.0 + $1.compressed, $0.1 + $1.raw, $0.2 + $1.unallocated, $0.3 + $1.pblks) }
    }
}

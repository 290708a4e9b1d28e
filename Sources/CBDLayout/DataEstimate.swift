// SPDX-License-Identifier: Apache-2.0
import Glibc
import CBDFormat
import CBDDevice

extension RawToCBD {
    /// Blocks compressed to estimate the data size of a conversion.
    static let estimateSamples = 64
    /// Data extents looked at; the rest of a more fragmented input counts as data.
    static let estimateExtents = 4096

    /// An estimate of the pblks the input packs into, made before pass 1 so that its data
    /// can go straight to its place: the tables' size (so where data lies) depends on it.
    /// Only the table size must come out right, and that changes with the zone count by
    /// powers of two: a rough figure (`estimateSamples` blocks) is enough, and a wrong one
    /// costs a copy, never data.
    func estimatePackedPblks(_ input: any BlockDevice) throws -> Int {
        try sample(input, blocks: RawToCBD.estimateSamples).pblks
    }

    /// What a sample of the input says about its packed size.
    package struct Sample: Sendable {
        /// Blocks that hold some of the input's data (not holes); zero blocks among them count too.
        var blocksWithData = 0
        var sampled = 0
        /// The estimated pblks of the packed data, and its standard error.
        var pblks = 0
        var standardError = 0.0
        /// Sampled blocks that were all zeros.
        var zeroFraction = 0.0
    }

    /// Packs `blocks` blocks spread evenly over the input's data, as pass 1 would pack them,
    /// and scales their pblks up to every block that holds data. The standard error is the
    /// sample's (the spread of the sampled blocks' pblks, with the finite-population correction).
    package func sample(_ input: any BlockDevice, blocks wanted: Int) throws -> Sample {
        let lblkSize = Units.pblkSize << lblkShift
        let extents = dataExtents(input)
        var out = Sample()
        let dataBytes = extents.reduce(0) { $0 + $1.count }
        out.blocksWithData = extents.reduce(0) { n, e in
            n + (e.upperBound + lblkSize - 1) / lblkSize - e.lowerBound / lblkSize
        }
        // At most 64 MiB read per 64 samples: blocks too large for that are taken as raw.
        let samples = min(wanted, out.blocksWithData, (64 << 20) / lblkSize * max(1, wanted / RawToCBD.estimateSamples))
        guard dataBytes > 0 else { return out }
        guard samples > 0 else {  // blocks too large to sample: all raw
            out.pblks = out.blocksWithData << lblkShift
            return out
        }
        // The sampled lblks, spread evenly over the data bytes; then packed on all cores.
        var lblks: [Int] = []
        var e = 0, before = 0  // extent e starts at data byte `before`
        for k in 0..<samples {
            let target = (2 * k + 1) * (dataBytes / (2 * samples))
            while e + 1 < extents.count && before + extents[e].count <= target {
                before += extents[e].count
                e += 1
            }
            lblks.append((extents[e].lowerBound + min(target - before, extents[e].count - 1)) / lblkSize)
        }
        let workers = Parallel.workers
        var pblksOf = [Int](repeating: 0, count: samples)
        try pblksOf.withUnsafeMutableBufferPointer { buf in
            let result = UncheckedBox(buf)
            try Parallel.forEachSlice(count: samples, parts: workers) { _, slice in
                let block = ByteBuffer(count: lblkSize), packed = ByteBuffer(count: lblkSize)
                for i in slice {
                    try read(input, lblks: lblks[i]..<lblks[i] + 1, extents: extents, into: block.raw)
                    result.value[i] = pack(block.base, into: packed.base).bytes / Units.pblkSize
                }
            }
        }
        let sum = pblksOf.reduce(0, +), sumSquares = pblksOf.reduce(0) { $0 + $1 * $1 }
        let zeros = pblksOf.filter { $0 == 0 }.count
        let total = out.blocksWithData
        out.sampled = samples
        out.pblks = sum * total / samples
        out.zeroFraction = Double(zeros) / Double(samples)
        let mean = Double(sum) / Double(samples)
        let variance =
            samples > 1 ? max(0, (Double(sumSquares) - Double(samples) * mean * mean) / Double(samples - 1)) : 0
        let correction = total > 1 ? max(0, Double(total - samples) / Double(total - 1)) : 0
        out.standardError = Double(total) * (variance / Double(samples) * correction).squareRoot()
        return out
    }

    /// The input's data extents (a block device is one), at most `estimateExtents` of them:
    /// the rest of the input counts as one more.
    private func dataExtents(_ input: any BlockDevice) -> [Range<Int>] {
        var holes = HoleMap(input)
        var out: [Range<Int>] = []
        var pos = 0
        while pos < input.size, let d = holes.data(after: pos) {
            if out.count == RawToCBD.estimateExtents {
                out.append(d.lowerBound..<input.size)
                break
            }
            out.append(d)
            pos = d.upperBound
        }
        return out
    }
}

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
    /// Blocks spread evenly over the input's data are packed as pass 1 would pack them.
    /// Only the table size must come out right, and that changes with the zone count by
    /// powers of two: a rough figure is enough, and a wrong one costs a copy, never data.
    func estimatePackedPblks(_ input: any BlockDevice) throws -> Int {
        let lblkSize = Units.pblkSize << lblkShift
        let extents = dataExtents(input)
        let dataBytes = extents.reduce(0) { $0 + $1.count }
        let blocksWithData = extents.reduce(0) { n, e in
            n + (e.upperBound + lblkSize - 1) / lblkSize - e.lowerBound / lblkSize
        }
        let samples = min(RawToCBD.estimateSamples, blocksWithData, (64 << 20) / lblkSize)
        guard dataBytes > 0 else { return 0 }
        guard samples > 0 else { return blocksWithData << lblkShift }   // blocks too large to sample: all raw
        let block = ByteBuffer(count: lblkSize), packed = ByteBuffer(count: lblkSize)
        var pblks = 0, e = 0, before = 0   // extent e starts at data byte `before`
        for k in 0..<samples {
            let target = (2 * k + 1) * (dataBytes / (2 * samples))
            while e + 1 < extents.count && before + extents[e].count <= target {
                before += extents[e].count
                e += 1
            }
            let lblk = (extents[e].lowerBound + min(target - before, extents[e].count - 1)) / lblkSize
            try read(input, lblks: lblk..<lblk + 1, extents: extents, into: block.raw)
            pblks += pack(block.base, into: packed.base).bytes / Units.pblkSize
        }
        return pblks * blocksWithData / samples
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

// SPDX-License-Identifier: Apache-2.0
import CBDFormat
/// Pass 2: each zone's bitmap against the claims of pass 1 and 1B.
extension Checker {
    func pass2() throws {
        // Elsewhere a bitmap is a hole (all free) and nothing claims a pblk: nothing to compare.
        let zones = Set(bitmaps.active).union(bitmaps.markedZones).union(claims.zones).sorted()
        for (i, z) in zones.enumerated() where !stop {
            options.progress?(.bitmaps, i + 1, zones.count)
            let have = bitmaps[z]
            guard !claims.marksExactly(have, zone: z) else { continue }
            let want = claims.expectedBitmap(z)
            let limit = geometry.dataPblkCount(z)
            var leaks: [Range<Int>] = [], unmarked: [Range<Int>] = []
            var k = 0
            while k < limit {
                guard want.isSet(k) != have.isSet(k) else { k += 1; continue }
                var e = k + 1
                while e < limit && want.isSet(e) != have.isSet(e) && want.isSet(e) == want.isSet(k) { e += 1 }
                if want.isSet(k) { unmarked.append(k..<e) } else { leaks.append(k..<e) }
                k = e
            }
            var fixed = have
            let start = geometry.dataStart(z)
            // Leaked pblks that hold data are orphans, for pass 3; only zeros are freed here.
            leaks = try leaks.flatMap { try splitOrphans($0, start: start) }
            if !leaks.isEmpty {
                var f = facts(zone: z)
                f.detail = ranges(leaks, start)
                f.pblks = leaks.flatMap { $0 }.map { $0 + start }
                if decide(Problem(.leakedPblks, f)) { for r in leaks { for k in r { fixed.clear(k) } } }
            }
            if !unmarked.isEmpty && !stop {
                var f = facts(zone: z)
                f.detail = ranges(unmarked, start)
                f.pblks = unmarked.flatMap { $0 }.map { $0 + start }
                f.others = Set(f.pblks.flatMap { unmarkedOwners[$0] ?? [] }).sorted()
                if decide(Problem(.unmarkedPblks, f, suspectLblks: f.others)) {
                    for r in unmarked { for k in r { fixed.set(k) } }
                }
            }
            if !stop, (limit..<Units.pblksPerBitmap).contains(where: { !have.isSet($0) }) {
                var f = facts(zone: z)
                f.detail = "\(limit)"
                if decide(Problem(.bitmapPadding, f)) { for k in limit..<Units.pblksPerBitmap { fixed.set(k) } }
            }
            if fixed != have { bitmaps[z] = fixed; changedBitmaps.insert(z) }
        }
    }

    /// Cuts the data out of leaked range `r` (relative to `start`): its `dataSpan` goes to
    /// `orphanRuns`; what is returned (the zeros around it) is a plain leak.
    private func splitOrphans(_ r: Range<Int>, start: Int) throws -> [Range<Int>] {
        guard let span = try dataSpan(of: r, start: start) else { return [r] }
        orphanRuns.append(start + span.lowerBound..<start + span.upperBound)
        return [r.lowerBound..<span.lowerBound, span.upperBound..<r.upperBound].filter { !$0.isEmpty }
    }

    /// The part of leaked range `r` (relative to `start`) from its first to its last pblk that
    /// is not all zeros (zeros between are kept: they may be a block's own), or nil when it
    /// holds only zeros. The rule of what a leak holds: pass 2 frees the rest, and a clone
    /// of pass 1B that finds no other room may take it.
    func dataSpan(of r: Range<Int>, start: Int) throws -> Range<Int>? {
        let chunk = 256, pblk = Units.pblkSize
        let buffer = ByteBuffer(count: min(chunk, r.count) * pblk)  // a short leak reads no more
        var first: Int?, last = 0
        var k = r.lowerBound
        while k < r.upperBound {
            let n = min(chunk, r.upperBound - k)
            let bytes = (start + k) * pblk..<(start + k + n) * pblk
            if !device.isHole(bytes) {
                try device.read(into: buffer[0..<n * pblk], at: bytes.lowerBound)
                for j in 0..<n where !isAllZero(buffer.base + j * pblk, pblk) {
                    if first == nil { first = k + j }
                    last = k + j
                }
            }
            k += n
        }
        return first.map { $0..<last + 1 }
    }

    /// "43-44,50" and "and N more ranges" past eight.
    private func ranges(_ rs: [Range<Int>], _ base: Int) -> String {
        let shown = rs.prefix(8).map {
            $0.count == 1 ? "\($0.lowerBound + base)" : "\($0.lowerBound + base)-\($0.upperBound - 1 + base)"
        }
        return shown.joined(separator: ",") + (rs.count > 8 ? " and \(rs.count - 8) more ranges" : "")
    }
}

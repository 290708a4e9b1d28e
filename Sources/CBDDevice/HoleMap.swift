// SPDX-License-Identifier: Apache-2.0
/// Where a sparse file holds data, asked in increasing order with few SEEK_DATA/SEEK_HOLE
/// calls: the last data extent found answers every question below its end. (On tmpfs a
/// SEEK_HOLE walks the page cache up to the hole, so asking again per window of a dense
/// file would walk it over and over.) A block device is one extent.
package struct HoleMap {
    let device: any BlockDevice
    /// No data in [asked, extent.lowerBound); data in `extent`; nil: none after `asked`.
    private var asked = Int.max
    private var extent: Range<Int>?

    package init(_ device: any BlockDevice) { self.device = device }

    /// The data at or after `offset` that comes first: the rest of an extent, or nil.
    package mutating func data(after offset: Int) -> Range<Int>? {
        if offset < asked || (extent.map { offset >= $0.upperBound } ?? false) {
            asked = offset
            extent = device.nextData(from: offset).map { $0..<device.nextHole(from: $0) }
        }
        return extent.map { max($0.lowerBound, offset)..<$0.upperBound }
    }

    package mutating func isHole(_ range: Range<Int>) -> Bool {
        guard let e = data(after: range.lowerBound) else { return true }
        return e.lowerBound >= range.upperBound
    }

    /// The data extents inside `range`, clipped to it.
    package mutating func dataRanges(in range: Range<Int>) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var pos = range.lowerBound
        while pos < range.upperBound, let e = data(after: pos), e.lowerBound < range.upperBound {
            out.append(e.lowerBound..<min(e.upperBound, range.upperBound))
            pos = e.upperBound
        }
        return out
    }
}

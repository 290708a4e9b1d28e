// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice
/// The packed data of pass 1 (each allocated block's pblks back to back, in block order) and
/// where pass 2 finds it: contiguous in a `Spill`, or already laid out in the output
/// (`PlacedStream`). Stream pblk t belongs to zone t / 32768, whatever the layout.
package protocol PackedStream: AnyObject {
    /// Bytes appended so far (whole pblks).
    var size: Int { get }
    func append(_ p: UnsafeRawPointer, _ count: Int) throws
    /// The byte offset of stream pblk `t`, the first of a zone's run (t % 32768 == 0), in
    /// the place that holds the stream.
    func offset(ofStreamPblk t: Int) -> Int
    /// Reads `count` bytes at `offset` of the place that holds the stream.
    func read(into p: UnsafeMutableRawPointer, _ count: Int, at offset: Int) throws
    /// The open file that holds the stream, for in-kernel copies; nil in memory.
    var file: Int32? { get }
    /// The output device the stream was written into at its place, if any.
    var placedIn: (any BlockDevice)? { get }
}

extension Spill: PackedStream {
    package func offset(ofStreamPblk t: Int) -> Int { t * Units.pblkSize }
    package var file: Int32? { fd }
    package var placedIn: (any BlockDevice)? { nil }
}

/// The stream written straight to its place in an output laid out as `layout`, zone after
/// zone: where data goes depends only on the table size (`layout.tableBlocks`), not on how
/// many zones the device ends with, so the layout's zone count is free to change.
final class PlacedStream: PackedStream {
    let device: any BlockDevice
    let layout: Geometry
    private(set) var size = 0
    var file: Int32? { device.openFile }
    var placedIn: (any BlockDevice)? { device }

    init(device: any BlockDevice, layout: Geometry) {
        self.device = device
        self.layout = layout
    }

    func append(_ p: UnsafeRawPointer, _ count: Int) throws {
        var done = 0
        while done < count {
            let t = (size + done) / Units.pblkSize
            let room = (Units.pblksPerBitmap - t % Units.pblksPerBitmap) * Units.pblkSize
            let n = min(count - done, room)
            try device.write(
                UnsafeRawBufferPointer(start: p + done, count: n),
                at: layout.dataPblk(streamIndex: t) * Units.pblkSize)
            done += n
        }
        size += count
    }

    func offset(ofStreamPblk t: Int) -> Int { layout.dataPblk(streamIndex: t) * Units.pblkSize }

    func read(into p: UnsafeMutableRawPointer, _ count: Int, at offset: Int) throws {
        try device.read(into: UnsafeMutableRawBufferPointer(start: p, count: count), at: offset)
    }
}

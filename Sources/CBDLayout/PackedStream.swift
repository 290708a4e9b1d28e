import CBDFormat
import CBDDevice
/// The packed data of pass 1 (each allocated block's pblks back to back, in block order) and
/// where pass 2 finds it: contiguous in a `Spill`, or already laid out in the output
/// (`PlacedStream`). Stream pblk t belongs to zone t / 32768, whatever the layout.
package protocol PackedStream: AnyObject {
    /// The file that holds the stream.
    var fd: Int32 { get }
    /// Bytes appended so far (whole pblks).
    var size: Int { get }
    func append(_ p: UnsafeRawPointer, _ count: Int) throws
    /// The byte offset in `fd` of stream pblk `t`, the first of a zone's run (t % 32768 == 0).
    func offset(ofStreamPblk t: Int) -> Int
}

extension Spill: PackedStream {
    package func offset(ofStreamPblk t: Int) -> Int { t * Units.pblkSize }
}

/// The stream written straight to its place in an output file laid out as `layout`, zone
/// after zone: where data goes depends only on the table size (`layout.tableBlocks`), not on
/// how many zones the device ends with, so the layout's zone count is free to change.
final class PlacedStream: PackedStream {
    let device: FileDevice
    let layout: Geometry
    private(set) var size = 0
    var fd: Int32 { device.fd }

    init(device: FileDevice, layout: Geometry) {
        self.device = device
        self.layout = layout
    }

    func append(_ p: UnsafeRawPointer, _ count: Int) throws {
        var done = 0
        while done < count {
            let t = (size + done) / Units.pblkSize
            let room = (Units.pblksPerBitmap - t % Units.pblksPerBitmap) * Units.pblkSize
            let n = min(count - done, room)
            try pwriteAll(device.fd, p + done, n, layout.dataPblk(streamIndex: t) * Units.pblkSize, what: device.path)
            done += n
        }
        size += count
    }

    func offset(ofStreamPblk t: Int) -> Int { layout.dataPblk(streamIndex: t) * Units.pblkSize }
}

// SPDX-License-Identifier: Apache-2.0
/// What a re-layout resize puts in pblk 0 while it rewrites the device: not a header (no CBD
/// magic, so no tool takes the device for a valid one), but the name of the undo file that
/// puts it back. Layout: "CBDRSZ1" and a zero byte, u16 length, the undo file's path (UTF-8).
public enum ResizeMarker {
    static let magic = Array("CBDRSZ1\0".utf8)

    /// The marker pblk for `undoPath` (a path too long for one pblk is cut).
    public static func encode(undoPath: String) -> [UInt8] {
        let name = Array(undoPath.utf8.prefix(Units.pblkSize - 10))
        var b = [UInt8](repeating: 0, count: Units.pblkSize)
        b.replaceSubrange(0..<8, with: magic)
        LE.put(UInt64(name.count), 2, &b, 8)
        b.replaceSubrange(10..<10 + name.count, with: name)
        return b
    }

    /// The undo file a marker pblk names, or nil when `b` is not a marker.
    public static func undoPath(in b: [UInt8]) -> String? {
        guard b.count >= Units.pblkSize, Array(b[0..<8]) == magic else { return nil }
        let n = Int(LE.get(b, 8, 2))
        guard n <= Units.pblkSize - 10 else { return nil }
        return String(decoding: b[10..<10 + n], as: UTF8.self)
    }
}

// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice
import CBDVolume
import CBDCheck
import CBDTestSupport

/// Where the fsck target's repairs save orphaned data (removed when the process ends).
private let fuzzLostFound = try? Scratch()

/// libFuzzer targets over the format code, chosen by CBD_FUZZ_TARGET:
///   header  — Header.decode and Geometry of arbitrary 4 KiB
///   entry   — EntryCodec.decode of arbitrary bytes in every variant
///   volume  — an image in memory from the bytes: open it and read every logical block
///   fsck    — the same image: Checker -n, then -y, then a second -y must find nothing
/// Built with `make fuzz`; without -DFUZZING the binary replays files (regression runs).
enum FuzzTargets {
    static func run(_ name: String, _ bytes: UnsafeRawBufferPointer) {
        switch name {
        case "header": header(bytes)
        case "entry": entry(bytes)
        case "volume": volume(bytes)
        case "fsck": fsck(bytes)
        default: fatalError("unknown CBD_FUZZ_TARGET \(name)")
        }
    }

    static func header(_ bytes: UnsafeRawBufferPointer) {
        var b = [UInt8](repeating: 0, count: 4096)
        for (i, x) in bytes.prefix(4096).enumerated() { b[i] = x }
        guard let h = try? Header.decode(b) else { return }
        if let g = try? Geometry(header: h) {
            _ = g.totalDataPblks
            _ = g.place(ofPblk: g.nrPblk - 1)
        }
    }

    static func entry(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= 2 else { return }
        let shift = Int(bytes[0] % 19)
        let pblks = [1000, 1 << 20, 1 << 40][Int(bytes[1] % 3)]
        guard let g = try? Geometry(unchecked: pblks, lblkShift: shift, lblkPerZoneShift: 0, nrLblk: 1) else { return }
        let codec = EntryCodec(g)
        var e = [UInt8](repeating: 0, count: codec.entryLen)
        for (i, x) in bytes.dropFirst(2).prefix(codec.entryLen).enumerated() { e[i] = x }
        if let decoded = try? codec.decode(e) {
            // What decodes must encode back to the same bytes.
            precondition(codec.encode(decoded) == e, "entry round trip")
        }
    }

    /// A small device image: the fuzzer's bytes laid over a valid device at fixed places.
    static func image(_ bytes: UnsafeRawBufferPointer) -> MemoryDevice {
        let dev = MemoryDevice(size: 64 * 4096, name: "fuzz")
        try? dev.write(UnsafeRawBufferPointer(rebasing: bytes.prefix(64 * 4096)), at: 0)
        return dev
    }

    static func volume(_ bytes: UnsafeRawBufferPointer) {
        let dev = image(bytes)
        guard let v = try? Volume(device: dev, cacheBytes: 1) else { return }
        var buf = [UInt8](repeating: 0, count: v.geometry.lblkSize)
        for n in 0..<min(v.geometry.nrLblk, 256) {
            try? buf.withUnsafeMutableBytes { try v.read(into: $0, at: n * v.geometry.lblkSize) }
        }
    }

    static func fsck(_ bytes: UnsafeRawBufferPointer) {
        let dev = image(bytes)
        var options = Checker.Options()
        options.verifyData = true
        guard let readOnly = try? Checker(device: dev, options: options) else { return }
        try? readOnly.run()
        options.mode = .fixAll
        options.lostFound = fuzzLostFound.map { LostFound(directory: $0.file("lost+found")) }
        guard let fix = try? Checker(device: dev, options: options), (try? fix.run()) != nil else { return }
        guard
            let again = try? Checker(
                device: dev,
                options: options)
        else { fatalError("fsck -y left an unreadable header") }
        try? again.run()
        precondition(again.problems.isEmpty, "fsck did not converge: \(again.problems.map { $0.message })")
    }
}

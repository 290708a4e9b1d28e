// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import CBDCLI
import CBDFormat
#if canImport(Glibc)
    import Glibc
    import CBDDevice
    import CBDVolume
    import CBDLayout
    import CBDCheck
#endif

/// Options naming a range of the logical device.
struct RangeOptions: ParsableArguments {
    @Option(
        name: [.customShort("o"), .long], parsing: .unconditional,
        help: "Byte offset in the logical device (default 0; K, M, G... suffixes).")
    var offset = SizeArgument(bytes: 0)
    @Option(name: [.customShort("l"), .long], parsing: .unconditional, help: "Number of bytes (default: to the end).")
    var length: SizeArgument?

    func resolve(logicalSize: Int, of device: String) throws -> (Int, Int) {
        let off = offset.bytes
        guard off <= logicalSize else {
            throw CBDError("\(device): offset \(off) is past the logical size \(logicalSize)")
        }
        let len = length?.bytes ?? (logicalSize - off)
        guard len <= logicalSize - off else {
            throw CBDError("\(device): range \(off)+\(len) is past the logical size \(logicalSize)")
        }
        return (off, len)
    }
}

struct Read: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Copy bytes of the logical device to standard output.")
    @Argument(help: "CBD device or image.", completion: .file()) var device: String
    @OptionGroup var range: RangeOptions

    func run() throws {
        try ToolRunner.run("cbd") {
            let vol = try Volume(device: try FileDevice(path: device, mode: .readOnly))
            let (off, len) = try range.resolve(logicalSize: vol.logicalSize, of: device)
            if len < vol.geometry.lblkSize {
                // Less than a block: read alone, decoded only as far as it goes (no whole
                // block in memory: 4 KiB of a 1 GiB block costs its compressed bytes).
                let part = ByteBuffer(count: len)
                try vol.readShared(into: part[0..<len], at: off)
                try writeAll(1, part.base, len, "standard output")
                return
            }
            let buf = ByteBuffer(count: 1 << 20)
            var done = 0
            while done < len {
                let n = min(buf.count, len - done)
                try vol.read(into: buf[0..<n], at: off + done)
                try writeAll(1, buf.base, n, "standard output")
                done += n
            }
        }
    }
}

struct Write: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write standard input into the logical device at an offset.")
    @Argument(help: "CBD device or image.", completion: .file()) var device: String
    @Option(
        name: [.customShort("o"), .long], parsing: .unconditional,
        help: "Byte offset in the logical device (default 0).")
    var offset = SizeArgument(bytes: 0)
    @Option(help: "Compression: 1 fast (default), 2 to 12 LZ4HC (smaller, slower to write; read as fast).")
    var level = CompressionLevel.fast
    @Flag(name: .shortAndLong, help: "Write even a device not cleanly closed (DIRTY).") var force = false

    func run() throws {
        try ToolRunner.run("cbd") {
            let vol = try Volume(device: try FileDevice(path: device, mode: .readWrite), force: force)
            vol.level = level
            Interrupts.install(
                tool: "cbd",
                message: "interrupted; \(device) left DIRTY: check it with fsck.cbd \(device)")
            let off = offset.bytes
            guard off <= vol.logicalSize else {
                throw CBDError(
                    "\(device): offset \(off) is past the logical size "
                        + "\(vol.logicalSize)")
            }
            // The whole input is measured before the first byte is written.
            let input = try StagedInput(room: vol.logicalSize - off)
            guard input.length <= vol.logicalSize - off else {
                throw CBDError(
                    "\(device): input of \(input.length) bytes runs past the logical size "
                        + "\(vol.logicalSize) at offset \(off); nothing written")
            }
            let buf = ByteBuffer(count: 1 << 20)
            var done = 0
            defer { try? vol.close() }
            do {
                while done < input.length {
                    let n = try input.read(into: buf.base, min(buf.count, input.length - done), at: done)
                    try vol.write(UnsafeRawBufferPointer(buf[0..<n]), at: off + done)
                    done += n
                }
                try vol.close()
            } catch let e as CBDError where e.kind == .noSpace {
                // The piece that did not fit was refused whole; the pieces before it were
                // accepted and are stored by the close. The device is closed clean either way.
                try vol.close()
                guard done > 0 else {
                    throw CBDError("\(e.message): nothing written; the device is unchanged", kind: .noSpace)
                }
                throw CBDError(
                    "\(e.message): wrote \(done) of \(input.length) bytes (offsets \(off) to "
                        + "\(off + done - 1)); the rest was not written and the device is consistent", kind: .noSpace)
            }
        }
    }
}

/// Standard input, measured before anything is written: a regular file by its size, anything
/// else (a pipe) copied to an unlinked temporary file, up to one byte past `room` (enough to
/// know it does not fit).
struct StagedInput {
    let length: Int
    private let spill: Spill?

    init(room: Int) throws {
        var st = stat()
        if fstat(0, &st) == 0 && st.st_mode & S_IFMT == S_IFREG {
            length = max(0, Int(st.st_size) - max(0, Int(lseek(0, 0, SEEK_CUR))))
            spill = nil
            return
        }
        let s = try Spill(directory: ScratchDirectory.path)
        let buf = ByteBuffer(count: 1 << 20)
        while s.size <= room {
            let n = try readSome(0, buf.base, buf.count)
            if n == 0 { break }
            try s.append(buf.base, n)
        }
        length = s.size
        spill = s
    }

    /// Fills `count` bytes at `p` from byte `offset` of the input (read in order).
    func read(into p: UnsafeMutableRawPointer, _ count: Int, at offset: Int) throws -> Int {
        if let s = spill {
            try s.read(into: p, count, at: offset)
            return count
        }
        let n = try readSome(0, p, count)
        guard n == count else { throw CBDError("standard input: ended early at byte \(offset + n)") }
        return n
    }
}

struct Discard: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Discard a range: it reads as zeros afterwards.")
    @Argument(help: "CBD device or image.", completion: .file()) var device: String
    @OptionGroup var range: RangeOptions
    @Flag(
        name: .shortAndLong,
        help: "Discard the whole device when no range is given, or a device not cleanly closed (DIRTY).")
    var force = false

    func run() throws {
        try ToolRunner.run("cbd") {
            let vol = try Volume(device: try FileDevice(path: device, mode: .readWrite), force: force)
            Interrupts.install(
                tool: "cbd",
                message: "interrupted; \(device) left DIRTY: check it with fsck.cbd \(device)")
            let (off, len) = try range.resolve(logicalSize: vol.logicalSize, of: device)
            guard force || range.length != nil || range.offset.bytes != 0 else {
                throw CBDError("\(device): no range given: this discards the whole device", hint: .force)
            }
            defer { try? vol.close() }  // a refused discard leaves the device clean, too
            try vol.discard(offset: off, length: len)
            try vol.close()
        }
    }
}

func writeAll(_ fd: Int32, _ p: UnsafeRawPointer, _ count: Int, _ what: String) throws {
    let done = try transfer(count, { Glibc.write(fd, p + $0, count - $0) }) { code, _ in
        CBDError("\(what): write error: \(String(cString: strerror(code)))")
    }
    if done < count { throw CBDError("\(what): write error: nothing written") }
}

/// Fills up to `count` bytes from `fd` (a pipe may deliver less at a time); 0 at end of input.
func readSome(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ count: Int) throws -> Int {
    try transfer(count, { Glibc.read(fd, p + $0, count - $0) }) { code, _ in
        CBDError("standard input: read error: \(String(cString: strerror(code)))")
    }
}

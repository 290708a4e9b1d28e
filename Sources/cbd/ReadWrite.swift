import ArgumentParser
import CBDCLI
import CBDFormat
#if canImport(Glibc)
import Glibc
#endif

/// Options naming a range of the logical device.
struct RangeOptions: ParsableArguments {
    @Option(name: [.customShort("o"), .long], help: "Byte offset in the logical device (K/M/G suffixes).")
    var offset: String = "0"
    @Option(name: [.customShort("l"), .long], help: "Number of bytes (default: to the end).")
    var length: String?

    func resolve(logicalSize: Int) throws -> (Int, Int) {
        let off = try Options.size(offset, "--offset")
        guard off <= logicalSize else { throw CBDError("offset \(off) is past the logical size \(logicalSize)") }
        let len = try length.map { try Options.size($0, "--length") } ?? (logicalSize - off)
        guard len <= logicalSize - off else {
            throw CBDError("range \(off)+\(len) is past the logical size \(logicalSize)")
        }
        return (off, len)
    }
}

struct Read: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Copy bytes of the logical device to standard output.")
    @Argument(help: "CBD device or image.") var device: String
    @OptionGroup var range: RangeOptions

    func run() throws {
        try ToolRunner.run("cbd") {
            let vol = try Volume(device: try FileDevice(path: device, mode: .readOnly))
            let (off, len) = try range.resolve(logicalSize: vol.logicalSize)
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
    @Argument(help: "CBD device or image.") var device: String
    @Option(name: [.customShort("o"), .long], help: "Byte offset in the logical device.") var offset: String

    func run() throws {
        try ToolRunner.run("cbd") {
            let vol = try Volume(device: try FileDevice(path: device, mode: .readWrite))
            let off = try Options.size(offset, "--offset")
            guard off <= vol.logicalSize else { throw CBDError("offset \(off) is past the logical size "
                + "\(vol.logicalSize)") }
            let buf = ByteBuffer(count: 1 << 20)
            var done = 0
            defer { try? vol.close() }
            while true {
                let n = try readSome(0, buf.base, buf.count)
                if n == 0 { break }
                guard n <= vol.logicalSize - off - done else {
                    throw CBDError("\(device): input runs past the logical size \(vol.logicalSize) at offset "
                        + "\(off + done)")
                }
                try vol.write(UnsafeRawBufferPointer(buf[0..<n]), at: off + done)
                done += n
            }
            try vol.close()
        }
    }
}

struct Discard: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Discard a range: it reads as zeros afterwards.")
    @Argument(help: "CBD device or image.") var device: String
    @OptionGroup var range: RangeOptions

    func run() throws {
        try ToolRunner.run("cbd") {
            let vol = try Volume(device: try FileDevice(path: device, mode: .readWrite))
            let (off, len) = try range.resolve(logicalSize: vol.logicalSize)
            try vol.discard(offset: off, length: len)
            try vol.close()
        }
    }
}

func writeAll(_ fd: Int32, _ p: UnsafeRawPointer, _ count: Int, _ what: String) throws {
    var done = 0
    while done < count {
        let n = Glibc.write(fd, p + done, count - done)
        if n < 0 { if errno == EINTR { continue }; throw CBDError("\(what): write error: "
            + "\(String(cString: strerror(errno)))") }
        done += n
    }
}

/// Fills up to `count` bytes from `fd` (a pipe may deliver less at a time); 0 at end of input.
func readSome(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ count: Int) throws -> Int {
    var done = 0
    while done < count {
        let n = Glibc.read(fd, p + done, count - done)
        if n < 0 { if errno == EINTR { continue }; throw CBDError("standard input: read error: "
            + "\(String(cString: strerror(errno)))") }
        if n == 0 { break }
        done += n
    }
    return done
}

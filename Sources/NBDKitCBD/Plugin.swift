import CBDFormat
import CNBDKitCBD
import Glibc

/// The nbdkit plugin's state: one device and one `Volume` for the whole server.
///
/// Thread model: PARALLEL (plugin.c). These statics are set before the first connection and
/// only read afterwards. The `Volume` is guarded by plugin.c's reader-writer lock: reads run
/// at once through `Volume.readShared`; every other callback holds the lock alone. One shared
/// Volume means a flush on any connection commits every connection's writes (multi-conn is safe).
enum Server {
    nonisolated(unsafe) static var path: String?
    nonisolated(unsafe) static var cacheBytes = 32 << 20
    nonisolated(unsafe) static var readOnly = false
    nonisolated(unsafe) static var volume: Volume?

    /// Runs a callback body: an error goes to nbdkit's log (one line) with an errno.
    static func call(_ body: () throws -> Int32) -> Int32 {
        do { return try body() } catch {
            let message: String
            switch error {
            case let e as CBDError: message = e.message
            default: message = "\(error)"
            }
            let code = message.contains("no space left") ? ENOSPC : message.contains("read-only") ? EROFS : EIO
            cbd_plugin_error("cbd: " + message, code)
            return -1
        }
    }

    static func requireVolume() throws -> Volume {
        guard let v = volume else { throw CBDError("no device open") }
        return v
    }
}

@_cdecl("cbd_plugin_config")
func pluginConfig(_ key: UnsafePointer<CChar>, _ value: UnsafePointer<CChar>) -> Int32 {
    Server.call {
        let k = String(cString: key), v = String(cString: value)
        switch k {
        case "file": Server.path = v
        case "cache":
            guard let n = parseSize(v), n > 0 else { throw CBDError("cache=\(v): not a size") }
            Server.cacheBytes = n
        case "readonly":
            switch v.lowercased() {
            case "1", "true", "yes", "on": Server.readOnly = true
            case "0", "false", "no", "off": Server.readOnly = false
            default: throw CBDError("readonly=\(v): expected true or false")
            }
        default: throw CBDError("unknown parameter '\(k)' (file=, cache=, readonly=)")
        }
        return 0
    }
}

/// nbdkit's own size syntax is not at hand in Swift: bytes with an optional K/M/G suffix.
func parseSize(_ text: String) -> Int? {
    let units: [Character: Int] = ["K": 10, "M": 20, "G": 30, "T": 40]
    guard let last = text.last?.uppercased().first else { return nil }
    if let shift = units[last], let n = Int(text.dropLast()) { return n << shift }
    return Int(text)
}

@_cdecl("cbd_plugin_config_complete")
func pluginConfigComplete() -> Int32 {
    Server.call {
        guard Server.path != nil else { throw CBDError("file=DEVICE is required") }
        return 0
    }
}

/// Opens the device once, before any connection: the lock is held for the server's life
/// (LOCK_EX, or O_EXCL on a block device; LOCK_SH read-only), so writing tools refuse it.
@_cdecl("cbd_plugin_get_ready")
func pluginGetReady() -> Int32 {
    Server.call {
        guard let path = Server.path else { throw CBDError("file=DEVICE is required") }
        let dev = try FileDevice(path: path, mode: Server.readOnly ? .readOnly : .readWrite)
        let (header, _) = try dev.readHeader()
        if header.isDirty && !Server.readOnly {
            throw CBDError("\(path): not cleanly closed (DIRTY); check it with fsck.cbd first, or serve it read-only")
        }
        Server.volume = try Volume(device: dev, cacheBytes: Server.cacheBytes)
        return 0
    }
}

/// The server is going away: everything committed, DIRTY cleared.
@_cdecl("cbd_plugin_cleanup")
func pluginCleanup() {
    _ = Server.call {
        try Server.volume?.close()
        Server.volume = nil
        return 0
    }
}

@_cdecl("cbd_plugin_readonly")
func pluginReadOnly() -> Int32 { Server.readOnly ? 1 : 0 }

@_cdecl("cbd_plugin_get_size")
func pluginGetSize() -> Int64 {
    guard let v = Server.volume else { cbd_plugin_error("cbd: no device open", EIO); return -1 }
    return Int64(v.logicalSize)
}

@_cdecl("cbd_plugin_pread")
func pluginPread(_ buf: UnsafeMutableRawPointer, _ count: UInt32, _ offset: UInt64) -> Int32 {
    Server.call {
        try Server.requireVolume().readShared(into: UnsafeMutableRawBufferPointer(start: buf, count: Int(count)),
            at: Int(offset))
        return 0
    }
}

@_cdecl("cbd_plugin_pwrite")
func pluginPwrite(_ buf: UnsafeRawPointer, _ count: UInt32, _ offset: UInt64, _ fua: Int32) -> Int32 {
    Server.call {
        let v = try Server.requireVolume()
        try v.write(UnsafeRawBufferPointer(start: buf, count: Int(count)), at: Int(offset))
        if fua != 0 { try v.flush() }   // committed (and synced) before the reply
        return 0
    }
}

@_cdecl("cbd_plugin_flush")
func pluginFlush() -> Int32 {
    Server.call {
        try Server.requireVolume().flush()
        return 0
    }
}

@_cdecl("cbd_plugin_zero")
func pluginZero(_ count: UInt32, _ offset: UInt64, _ fua: Int32) -> Int32 {
    Server.call {
        let v = try Server.requireVolume()
        try v.discard(offset: Int(offset), length: Int(count))
        if fua != 0 { try v.flush() }
        return 0
    }
}

/// A connection closes: what it wrote is committed and the device marked clean (the next
/// write marks it DIRTY again).
@_cdecl("cbd_plugin_close")
func pluginClose() -> Int32 {
    Server.call {
        if !Server.readOnly { try Server.volume?.close() }
        return 0
    }
}

@_cdecl("cbd_plugin_extents")
func pluginExtents(_ count: UInt32, _ offset: UInt64, _ one: Int32, _ context: UnsafeMutableRawPointer?,
                   _ add: @convention(c) (UnsafeMutableRawPointer?, UInt64, UInt64, Int32) -> Int32) -> Int32 {
    Server.call {
        let v = try Server.requireVolume()
        let bs = v.geometry.lblkSize
        let end = min(Int(offset) + Int(count), v.logicalSize)
        var n = Int(offset) / bs
        while n * bs < end {
            // One run of blocks that are all allocated or all holes.
            let allocated = try v.isAllocated(n)
            let start = n * bs
            n += 1
            while n * bs < end, try v.isAllocated(n) == allocated { n += 1 }
            guard add(context, UInt64(start), UInt64(n * bs - start), allocated ? 0 : 1) == 0 else { return -1 }
            if one != 0 { break }
        }
        return 0
    }
}

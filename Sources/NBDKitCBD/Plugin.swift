// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CNBDKitCBD
import Glibc
import CBDDevice
import CBDVolume

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
    /// How written blocks are compressed (`level=`).
    nonisolated(unsafe) static var level = CompressionLevel.fast
    /// Dirty blocks are committed by plugin.c's committer thread from a quarter of the cache on
    /// (`background=`, default true); else only when the cache is full, on flush and on close.
    nonisolated(unsafe) static var background = true
    nonisolated(unsafe) static var volume: Volume?
    /// Free space, in percent of the data pblks, under which the log warns (once per fall).
    nonisolated(unsafe) static var lowWater = 10
    nonisolated(unsafe) static var space = SpaceWatch()
    /// Where clients connect (`uri=`), published for `cbd info`.
    nonisolated(unsafe) static var uri: String?
    /// nbdkit's Unix socket (`socket=`) and pid file (`pidfile=`, nbdkit's -P), removed at
    /// a clean stop: nbdkit leaves both behind.
    nonisolated(unsafe) static var socket: String?
    nonisolated(unsafe) static var pidFile: String?

    /// Runs a callback body: an error goes to nbdkit's log (one line) with the errno its kind
    /// maps to (ENOSPC for a write that does not fit, EROFS, ...; EIO for anything else).
    static func call(_ body: () throws -> Int32) -> Int32 {
        do { return try body() } catch {
            let (message, code): (String, Int32)
            switch error {
            case let e as CBDError: (message, code) = (e.message, e.nbdErrno)
            default: (message, code) = ("\(error)", EIO)
            }
            cbd_plugin_error("cbd: " + message, code)
            return -1
        }
    }

    /// Runs a callback that changes the volume (holding the lock alone), then publishes its use
    /// and warns below the low-water mark; a refusal for want of space is counted and published
    /// at once before it reaches the log.
    ///
    /// `waitable`: a request refused for want of room while a background commit writes its
    /// data returns 1 instead, unlogged and uncounted, and plugin.c calls it again once that
    /// commit is published (`Volume.isStoringPlan`: its blocks' promises still count beside
    /// the pblks it took, and their old pblks are freed only then). The refusal changed nothing.
    static func changing(waitable: Bool = false, _ body: (Volume) throws -> Void) -> Int32 {
        call {
            let v = try requireVolume()
            do { try body(v) } catch let e as CBDError where e.kind == .noSpace {
                if waitable && v.isStoringPlan { return 1 }
                space.refusals += 1
                try? space.update(v, now: true)
                throw e
            } catch {
                announceReadOnly(v)
                try? space.update(v, now: true)
                throw error
            }
            try space.update(v, now: false)
            return 0
        }
    }

    nonisolated(unsafe) static var announcedReadOnly = false
    /// The stop could not store or close everything (nbdkit then exits with 1).
    nonisolated(unsafe) static var stopFailed = false

    /// Says once, in the log, that the device failed under acknowledged writes and the server
    /// took no more (dm-vdo's read-only mode), and what to do.
    static func announceReadOnly(_ v: Volume) {
        guard let why = v.readOnlyAfter, !announcedReadOnly else { return }
        announcedReadOnly = true
        cbd_plugin_log(
            "cbd: \(why.message); writes, trims and zeroes now fail with EIO, reads go on; "
                + "\(v.unstoredBlocks) acknowledged blocks are held in memory only: stop the server, then run fsck.cbd")
        if let path {
            FailureNote.record("the server stopped taking writes after an I/O error: \(why.message)", for: path)
        }
    }

    /// Removes nbdkit's socket file at the stop, if it is still a socket (a stale one answers
    /// "connection refused" and makes the next `nbdkit -U` fail with "address in use"), and
    /// its pid file, if it still names this process (as qemu-nbd does).
    static func removeFiles() {
        var st = stat()
        if let s = socket, lstat(s, &st) == 0 && st.st_mode & S_IFMT == S_IFSOCK { unlink(s) }
        if let p = pidFile {
            let fd = open(p, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return }
            var bytes = [UInt8](repeating: 0, count: 32)
            let n = read(fd, &bytes, bytes.count)
            close(fd)
            let text = String(decoding: bytes.prefix(max(0, n)), as: UTF8.self)
            if Int32(text.split(separator: "\n").first ?? "") == getpid() { unlink(p) }
        }
    }

    /// Opens the device; a lock held for a moment by a reader (a `cbd info` polling the device
    /// while a service restarts) is waited for, up to two seconds, rather than failing the start.
    static func openWaitingBriefly(_ path: String) throws -> FileDevice {
        for _ in 0..<40 {
            do { return try FileDevice(path: path, mode: readOnly ? .readOnly : .readWrite) } catch let e as CBDError
                where e.kind == .busy
            {
                usleep(50_000)
            }
        }
        return try FileDevice(path: path, mode: readOnly ? .readOnly : .readWrite)
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
            let n = cbd_plugin_parse_size(value)
            guard n >= 0 else { return -1 }  // nbdkit said why
            guard n > 0, let bytes = Int(exactly: n) else { throw CBDError("cache=\(v): must be more than 0") }
            Server.cacheBytes = bytes
        case "lowwater":
            var n: UInt32 = 0
            guard cbd_plugin_parse_unsigned("lowwater", value, &n) == 0 else { return -1 }
            guard n <= 100 else { throw CBDError("lowwater=\(v): a percentage, 0 to 100") }
            Server.lowWater = Int(n)
        case "readonly":
            let b = cbd_plugin_parse_bool(value)
            guard b >= 0 else { return -1 }  // nbdkit said why
            Server.readOnly = b == 1
        case "background":
            let b = cbd_plugin_parse_bool(value)
            guard b >= 0 else { return -1 }
            Server.background = b == 1
        case "level":
            var n: UInt32 = 0
            guard cbd_plugin_parse_unsigned("level", value, &n) == 0 else { return -1 }
            guard let level = CompressionLevel(Int(n)) else {
                throw CBDError(
                    "level=\(v): from \(CompressionLevel.range.lowerBound) (fast) to "
                        + "\(CompressionLevel.range.upperBound) (LZ4HC's highest)")
            }
            Server.level = level
        case "uri": Server.uri = v
        case "socket": Server.socket = v
        case "pidfile": Server.pidFile = v
        default:
            throw CBDError(
                "unknown parameter '\(k)' (file=, cache=, lowwater=, readonly=, level=, background=, uri=, socket=, pidfile=)"
            )
        }
        return 0
    }
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
        let dev = try Server.openWaitingBriefly(path)
        let opened = try OpenedDevice(dev, allowing: .interruptedUpdate)
        if !opened.header.isDirty { FailureNote.clear(for: path) }  // checked and repaired since
        if opened.header.isDirty && !Server.readOnly {
            throw CBDError("\(path): not cleanly closed (DIRTY); check it with fsck.cbd first, or serve it read-only")
        }
        let v = try Volume(opened, cacheBytes: Server.cacheBytes)
        v.level = Server.level
        LZ4Codec.prepareThreads()  // before nbdkit's threads (and the committer) exist
        Server.volume = v
        Server.space.start(path: path, readOnly: Server.readOnly)
        try Server.space.update(v, now: true)
        return 0
    }
}

/// nbdkit has forked into the background, or stays in the foreground: this process serves, and
/// the live-use file names it from now on (it named the process before the fork).
@_cdecl("cbd_plugin_after_fork")
func pluginAfterFork() -> Int32 {
    Server.call {
        if let v = Server.volume { try Server.space.update(v, now: true) }
        return 0
    }
}

/// The server is going away: everything committed, DIRTY cleared, nbdkit's socket removed.
@_cdecl("cbd_plugin_cleanup")
func pluginCleanup() {
    _ = Server.call {
        defer {
            Server.space.stop()
            Server.removeFiles()
        }
        if let v = Server.volume {
            do { try v.close() } catch {
                // Whatever is still dirty in the cache was acknowledged and is not stored.
                let lost = v.unstoredBlocks
                Server.stopFailed = true
                if let path = Server.path {
                    FailureNote.record(
                        lost > 0
                            ? "the server stopped with \(lost) acknowledged block\(lost == 1 ? "" : "s") "
                                + "not stored, after an I/O error (\(error))"
                            : "the server could not mark the device clean (\(error))",
                        for: path)
                }
                cbd_plugin_log(
                    lost > 0
                        ? "cbd: stopping with \(lost) acknowledged block\(lost == 1 ? "" : "s") not stored on the device, "
                            + "which failed (\(error)); the device is left DIRTY: run fsck.cbd"
                        : "cbd: every acknowledged write is stored, but the device could not be marked clean (\(error)): "
                            + "run fsck.cbd")
                throw error
            }
        }
        Server.volume = nil
        return 0
    }
}

@_cdecl("cbd_plugin_lost_at_stop")
func pluginLostAtStop() -> Int32 { Server.stopFailed ? 1 : 0 }

@_cdecl("cbd_plugin_readonly")
func pluginReadOnly() -> Int32 { Server.readOnly ? 1 : 0 }

@_cdecl("cbd_plugin_get_size")
func pluginGetSize() -> Int64 {
    guard let v = Server.volume else { cbd_plugin_error("cbd: no device open", EIO); return -1 }
    return Int64(v.logicalSize)
}

/// The device's logical block size: what a client should write whole (a partial block is
/// read, modified and written again).
@_cdecl("cbd_plugin_block_size")
func pluginBlockSize() -> Int64 {
    guard let v = Server.volume else { cbd_plugin_error("cbd: no device open", EIO); return -1 }
    return Int64(v.geometry.lblkSize)
}

@_cdecl("cbd_plugin_pread")
func pluginPread(_ buf: UnsafeMutableRawPointer, _ count: UInt32, _ offset: UInt64) -> Int32 {
    Server.call {
        try Server.requireVolume().readShared(
            into: UnsafeMutableRawBufferPointer(start: buf, count: Int(count)),
            at: Int(offset))
        return 0
    }
}

@_cdecl("cbd_plugin_pack_ahead")
func pluginPackAhead(_ buf: UnsafeRawPointer, _ count: UInt32, _ offset: UInt64) -> UnsafeMutableRawPointer? {
    guard let v = Server.volume, !Server.readOnly,
        let a = v.packAhead(UnsafeRawBufferPointer(start: buf, count: Int(count)), at: Int(offset))
    else { return nil }
    return Unmanaged.passRetained(a).toOpaque()
}

@_cdecl("cbd_plugin_prefetch")
func pluginPrefetch(_ count: UInt32, _ offset: UInt64, _ ahead: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let given = ahead.map { Unmanaged<WriteAhead>.fromOpaque($0).takeRetainedValue() }
    guard let v = Server.volume, !Server.readOnly,
        let a = v.prefetch(offset: Int(offset), length: Int(count), adding: given)
    else { return nil }
    return Unmanaged.passRetained(a).toOpaque()
}

@_cdecl("cbd_plugin_pwrite")
func pluginPwrite(
    _ buf: UnsafeRawPointer, _ count: UInt32, _ offset: UInt64, _ fua: Int32,
    _ ahead: UnsafeMutableRawPointer?
) -> Int32 {
    let ahead = ahead.map { Unmanaged<WriteAhead>.fromOpaque($0).takeRetainedValue() }
    return Server.changing(waitable: true) { v in
        try v.write(UnsafeRawBufferPointer(start: buf, count: Int(count)), at: Int(offset), ahead: ahead)
        if fua != 0 { try v.flush(offset: Int(offset), length: Int(count)) }  // its blocks synced before the reply
    }
}

@_cdecl("cbd_plugin_changes")
func pluginChanges() -> Int64 { Int64(Server.volume?.changes ?? 0) }

@_cdecl("cbd_plugin_flush")
func pluginFlush(_ mark: Int64) -> Int32 {
    Server.changing { try $0.flush(dirtyBy: Int(mark)) }
}

/// 0: nothing to do; 1: a background commit is due; 2: writers should wait for one first.
/// Nothing is due once a failed commit made the volume read-only: its writes fail at once.
@_cdecl("cbd_plugin_wants_commit")
func pluginWantsCommit() -> Int32 {
    guard Server.background, let v = Server.volume, v.readOnlyAfter == nil else { return 0 }
    return v.wantsWritersToWait ? 2 : v.wantsBackgroundCommit ? 1 : 0
}

@_cdecl("cbd_plugin_plan_commit")
func pluginPlanCommit(_ mark: Int64) -> UnsafeMutableRawPointer? {
    guard let plan = Server.volume?.planCommit(dirtyBy: Int(mark)) else { return nil }  // woken only when wanted
    return Unmanaged.passRetained(plan).toOpaque()
}

@_cdecl("cbd_plugin_pack_commit")
func pluginPackCommit(_ plan: UnsafeMutableRawPointer, _ allCores: Int32) {
    Unmanaged<CommitPlan>.fromOpaque(plan).takeUnretainedValue().pack(onAllCores: allCores != 0)
}

@_cdecl("cbd_plugin_help_pack")
func pluginHelpPack(_ plan: UnsafeMutableRawPointer) {
    Unmanaged<CommitPlan>.fromOpaque(plan).takeUnretainedValue().helpPack()
}

@_cdecl("cbd_plugin_plan_retain")
func pluginPlanRetain(_ plan: UnsafeMutableRawPointer) { _ = Unmanaged<CommitPlan>.fromOpaque(plan).retain() }

@_cdecl("cbd_plugin_plan_release")
func pluginPlanRelease(_ plan: UnsafeMutableRawPointer) { Unmanaged<CommitPlan>.fromOpaque(plan).release() }

@_cdecl("cbd_plugin_plan_blocks")
func pluginPlanBlocks(_ plan: UnsafeMutableRawPointer) -> Int64 {
    Int64(Unmanaged<CommitPlan>.fromOpaque(plan).takeUnretainedValue().blockCount)
}

@_cdecl("cbd_plugin_dirty_blocks")
func pluginDirtyBlocks() -> Int64 { Int64(Server.volume?.unstoredBlocks ?? 0) }

/// Called with no lock: the store takes the shared lock for the parts that need it, and
/// writes and syncs the data beside every request. A failure is kept for the finish to report.
@_cdecl("cbd_plugin_store_commit")
func pluginStoreCommit(_ plan: UnsafeMutableRawPointer) {
    guard let v = Server.volume else { return }
    v.store(Unmanaged<CommitPlan>.fromOpaque(plan).takeUnretainedValue()) { part in
        cbd_plugin_lock_shared()
        defer { cbd_plugin_unlock_shared() }
        part()
    }
}

/// A failure is a failed commit, as a flush's: logged, and the server read-only from then on.
@_cdecl("cbd_plugin_finish_commit")
func pluginFinishCommit(_ plan: UnsafeMutableRawPointer) -> Int32 {
    let plan = Unmanaged<CommitPlan>.fromOpaque(plan).takeRetainedValue()
    return Server.changing { try $0.finish(plan) }
}

@_cdecl("cbd_plugin_zero")
func pluginZero(_ count: UInt32, _ offset: UInt64, _ fua: Int32) -> Int32 {
    Server.changing(waitable: true) { v in
        try v.discard(offset: Int(offset), length: Int(count))
        if fua != 0 { try v.flush(offset: Int(offset), length: Int(count)) }
    }
}

@_cdecl("cbd_plugin_trim")
func pluginTrim(_ count: UInt32, _ offset: UInt64, _ fua: Int32) -> Int32 {
    Server.changing { v in
        try v.trim(offset: Int(offset), length: Int(count))
        if fua != 0 { try v.flush(offset: Int(offset), length: Int(count)) }
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
func pluginExtents(
    _ count: UInt32, _ offset: UInt64, _ one: Int32, _ context: UnsafeMutableRawPointer?,
    _ add: @convention(c) (UnsafeMutableRawPointer?, UInt64, UInt64, Int32) -> Int32
) -> Int32 {
    Server.call {
        let v = try Server.requireVolume()
        let bs = v.geometry.lblkSize
        let end = min(Int(offset) + Int(count), v.logicalSize)
        let endLblk = (end + bs - 1) / bs
        var n = Int(offset) / bs
        while n < endLblk {
            // One run of blocks that are all allocated or all holes (a huge hole costs a seek).
            let (allocated, next) = try v.allocationRun(from: n, below: endLblk)
            let start = max(n * bs, Int(offset))
            guard add(context, UInt64(start), UInt64(min(next * bs, end) - start), allocated ? 0 : 1) == 0 else {
                return -1
            }
            n = next
            if one != 0 { break }
        }
        return 0
    }
}
